"""Structural learning: the topology learns too — edges are pruned and regrown during training.

Paper 000 closes on what an arbitrary topology allows: a network that chooses its own
connections.  The rules, one module each:

- :mod:`.static`: static random sparsity (the topology never changes);
- :mod:`.magnitude`: gradual magnitude pruning to a target density (Zhu & Gupta 2017);
- :mod:`.sparse_evolutionary`: SET, drop the weakest edges, regrow at random (Mocanu et al.
  2018);
- :mod:`.rigl`: RigL, drop the weakest, regrow where the exact dense gradient is largest (Evci
  et al. 2020).

:mod:`.schedule` says when and how much (update every N steps, cosine-decayed drop fraction);
:mod:`.rewire` moves the network (``topo.with_edges`` → ``net.rewire_``) and the optimiser
state; :mod:`.learning` is the callback that ``meshprop.training.fit`` calls after every step
(``fit(..., after_step=StructuralLearning(...))``).  Every rule works on both layouts through the
edge vector (``net.edge_weights()``) and the network's ``Layout``, and never builds an N×N tensor
(:mod:`.edges`, :mod:`.sampling`, :mod:`.absent_gradient`).
"""

from .edges import EdgeChange, density
from .learning import STRUCTURES, StructuralLearning, make_rule
from .magnitude import MagnitudePruning
from .rewire import apply_change, rewire
from .rigl import RigL, dense_gradient
from .rule import StructureRule, UpdateContext
from .schedule import UpdateSchedule, pruning_density
from .sparse_evolutionary import SET
from .static import Static

__all__ = [
    "SET",
    "STRUCTURES",
    "EdgeChange",
    "MagnitudePruning",
    "RigL",
    "Static",
    "StructuralLearning",
    "StructureRule",
    "UpdateContext",
    "UpdateSchedule",
    "apply_change",
    "dense_gradient",
    "density",
    "make_rule",
    "pruning_density",
    "rewire",
]
