"""Layered networks: the MLP special case of a mesh (paper 000 Fig. 1) with the two explicit
gradient rules of paper 002 (two-step rule) and paper 003 (tensor batch backpropagation).

    mlp = mp.layered.MLP([4, 13, 13, 3], activation="tanh", output_activation="identity")
    loss, grads = mlp.gradient(x, labels, loss="cross_entropy", rule="tensor_batch")
    net = mlp.to_mesh()                  # the same network as a MeshNet (Topology.layered)
    mlp2 = mp.layered.MLP.from_mesh(net)  # and back
"""

from .conversion import (
    adjacency_to_weights,
    check_layered,
    closest_layer_sizes,
    infer_layer_sizes,
    layer_starts,
    weights_to_adjacency,
)
from .model import GRAD_MODES, MLP
from .rules import RULES, LayeredRule, get_rule

__all__ = [
    "GRAD_MODES",
    "MLP",
    "RULES",
    "LayeredRule",
    "adjacency_to_weights",
    "check_layered",
    "closest_layer_sizes",
    "get_rule",
    "infer_layer_sizes",
    "layer_starts",
    "weights_to_adjacency",
]
