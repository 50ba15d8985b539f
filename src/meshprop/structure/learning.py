"""The structural-learning callback of :func:`meshprop.training.fit` (its ``after_step``).

    structure = StructuralLearning("rigl", UpdateSchedule(100, 0.3, end_step=...), seed=0)
    fit(net, train, after_step=structure)
    structure.log          # one record per update: step, edges, density, added, removed

After every optimiser step whose number is an update step of the schedule, the rule proposes an
:class:`~.edges.EdgeChange`; the new topology is ``topo.with_edges(add, remove)`` and ``net`` is
moved onto it in place with its optimiser state (:mod:`.rewire`), on either layout.  There is
no second training loop.

:meth:`StructuralLearning.state_dict` and :meth:`~StructuralLearning.load_state_dict` carry the
topology (its edge list), the rule's random generator and the log through a training checkpoint
(``fit(..., checkpoint=TrainingCheckpoint(..., extra_state=structure.state_dict,
load_extra_state=structure.load_state_dict))``), so a resumed run changes the same edges.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses import LossFn
from ..mesh import MeshNet
from ..topology import Topology
from .edges import density
from .magnitude import MagnitudePruning
from .rewire import apply_change, rewire
from .rigl import RigL
from .rule import StructureRule, UpdateContext
from .schedule import UpdateSchedule
from .sparse_evolutionary import SET
from .static import Static

__all__ = ["STRUCTURES", "StructuralLearning", "make_rule"]

#: the update rules by name
STRUCTURES = ("static", "magnitude", "set", "rigl")


def make_rule(
    name: str, density: float | None = None, initial_density: float = 1.0
) -> StructureRule:
    """The rule called ``name`` (:data:`STRUCTURES`); ``density`` and ``initial_density`` are
    magnitude pruning's target (required) and start."""
    if name == "static":
        return Static()
    if name == "magnitude":
        if density is None:
            raise ValueError(
                "magnitude pruning needs its target density: make_rule('magnitude', density=D) "
                "or MagnitudePruning(D)"
            )
        return MagnitudePruning(density, initial_density)
    if name == "set":
        return SET()
    if name == "rigl":
        return RigL()
    raise ValueError(f"unknown structure rule {name!r}; expected one of {', '.join(STRUCTURES)}")


class StructuralLearning:
    """``after_step`` callback applying ``rule`` (a :class:`~.rule.StructureRule` or its name)
    on the update steps of ``schedule``; ``seed`` seeds the rule's random choices."""

    def __init__(
        self,
        rule: StructureRule | str,
        schedule: UpdateSchedule | None = None,
        loss: str | LossFn = "cross_entropy",
        seed: int = 0,
    ) -> None:
        self.rule = make_rule(rule) if isinstance(rule, str) else rule
        self.schedule = schedule if schedule is not None else UpdateSchedule()
        self.loss = loss
        self.generator = torch.Generator().manual_seed(int(seed))
        self.log: list[dict[str, Any]] = []

    def __call__(
        self,
        step: int,
        net: Any,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        target: torch.Tensor,
    ) -> None:
        if not isinstance(net, MeshNet):
            raise TypeError(
                f"structural learning changes a MeshNet's topology, got {type(net).__name__}"
            )
        if not self.schedule.is_update(step):
            return
        context = UpdateContext(net, step, self.schedule, x, target, self.loss, self.generator)
        change = self.rule.propose(context)
        if len(change.add) or len(change.remove):
            apply_change(net, optimizer, change)
        self.log.append(
            {
                "step": step,
                "edges": net.topology.n_edges,
                "density": density(net.topology),
                "added": len(change.add),
                "removed": len(change.remove),
            }
        )

    def state_dict(self, net: Any) -> dict[str, Any]:
        """What a resumed run needs: ``net``'s edges, the rule's generator state, the log."""
        if not isinstance(net, MeshNet):
            raise TypeError(f"structural learning checkpoints a MeshNet, got {type(net).__name__}")
        return {
            "edges": net.topology.edges.clone(),
            "generator": self.generator.get_state(),
            "log": [dict(record) for record in self.log],
        }

    def load_state_dict(self, net: Any, state: dict[str, Any]) -> None:
        """Put back :meth:`state_dict`'s content: ``net`` is rewired onto the saved edges (its
        weights are loaded afterwards by the caller)."""
        if not isinstance(net, MeshNet):
            raise TypeError(f"structural learning checkpoints a MeshNet, got {type(net).__name__}")
        topo = net.topology
        saved = Topology(
            topo.n_inputs,
            topo.n_hidden,
            topo.n_outputs,
            topo.bias,
            layer_sizes=topo.layer_sizes,
            edges=torch.as_tensor(state["edges"], dtype=torch.long).reshape(-1, 2),
        )
        if saved != topo:
            rewire(net, saved)
        self.generator.set_state(state["generator"])
        self.log = [dict(record) for record in state["log"]]
