"""Topologies of mesh neural networks: which edges of the adjacency matrix may carry a weight.

Neurons follow the IHO positioning convention of paper 000 §2.1, with the optional bias neuron
placed right after the data inputs::

    [ data inputs (I) ][ bias (1, when bias=True) ][ hidden (H) ][ outputs (O) ]

``mask[i, j]`` is True when the edge from neuron ``i`` to neuron ``j`` exists (``A[i, j]`` is a
trainable weight).  Input and bias neurons are *clamped*: no edge may enter them.  Hidden and
output neurons may be connected in any way, cycles and self-loops included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np
import torch

from .memory import check_fits, format_bytes

__all__ = ["RANDOM_DENSE_LIMIT", "Topology"]

#: bytes per edge while a topology is built: the (P, 2) int64 pairs, the copy its hash reads and
#: the temporaries of the checks (an estimate for the memory guard, on the safe side)
BUILD_BYTES_PER_EDGE = 48
#: input edges per hidden neuron of :meth:`Topology.sparse_random` by default
SPARSE_RANDOM_FAN_IN = 3

#: :meth:`Topology.random` draws with ``torch.randperm`` over every allowed edge up to this many
#: allowed edges (the draws every figure so far was made with) and with
#: :func:`_sample_without_replacement`, whose memory is O(kept edges), above it.
RANDOM_DENSE_LIMIT = 2**22


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_build_memory(builder: str, n: int, edges: int, dense: bool) -> None:
    """Refuse, before allocating, a topology whose construction cannot fit in the memory limit
    (:func:`meshprop.memory.get_memory_limit`): ``edges`` pairs, and an N×N boolean mask when
    ``dense``."""
    need = edges * BUILD_BYTES_PER_EDGE + (n * n if dense else 0)
    check_fits(
        need,
        "topology",
        lambda limit: (
            f"{builder}: {n} neurons and {edges} edges need about {format_bytes(need)} to "
            f"build{' (an N×N mask and the edge list)' if dense else ' (the edge list)'}, but "
            f"the memory limit is {format_bytes(limit)}; for a large network keep few edges "
            "per neuron (Topology.sparse_random, or Topology.random with a small density), or "
            "raise the limit (meshprop.set_memory_limit)"
        ),
    )


def _row_major(edges: torch.Tensor, n: int) -> torch.Tensor:
    """Edges sorted row-major (by source, then target)."""
    if len(edges) == 0:
        return edges
    order = torch.argsort(edges[:, 0] * n + edges[:, 1])
    return edges[order]


class Topology:
    """An immutable mesh topology: neuron counts and the set of allowed edges (a value).

    Build one with :meth:`mesh`, :meth:`random`, :meth:`layered`, :meth:`from_edges` or
    :meth:`from_networkx`; the constructor validates the N×N boolean ``mask`` it is given (or,
    with ``edges=``, a (P, 2) tensor of (source, target) pairs).  A topology cannot change after
    it is built: :attr:`mask` and :attr:`edges` hand out copies, equality and hash follow the
    counts and the edge set, and edits make a new one (:meth:`with_edges`).  So every cache keyed
    on a topology (the FOP plans) stays valid.
    """

    __slots__ = (
        "_dense",
        "_edges",
        "_hash",
        "bias",
        "layer_sizes",
        "n_hidden",
        "n_inputs",
        "n_outputs",
    )

    n_inputs: int
    n_hidden: int
    n_outputs: int
    bias: bool
    #: for topologies built by :meth:`layered`: the layer sizes, else None (a hint, not part of
    #: the value: equality ignores it).
    layer_sizes: tuple[int, ...] | None
    _edges: torch.Tensor
    _dense: torch.Tensor | None
    _hash: int

    def __init__(
        self,
        n_inputs: int,
        n_hidden: int,
        n_outputs: int,
        bias: bool,
        mask: torch.Tensor | None = None,
        layer_sizes: tuple[int, ...] | None = None,
        *,
        edges: torch.Tensor | None = None,
    ) -> None:
        _set = object.__setattr__
        _set(self, "n_inputs", _check_count("n_inputs", n_inputs, 0))
        _set(self, "n_hidden", _check_count("n_hidden", n_hidden, 0))
        _set(self, "n_outputs", _check_count("n_outputs", n_outputs, 1))
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        _set(self, "bias", bias)
        _set(self, "layer_sizes", None if layer_sizes is None else tuple(layer_sizes))
        n = self.n_neurons
        if (mask is None) == (edges is None):
            raise TypeError("give exactly one of mask (N×N bool) or edges ((P, 2) pairs)")
        if mask is not None:
            mask = torch.as_tensor(mask)
            if mask.shape != (n, n):
                raise ValueError(
                    f"mask must have shape ({n}, {n}) for {self.n_inputs} inputs, "
                    f"{int(self.bias)} bias, {self.n_hidden} hidden and {self.n_outputs} "
                    f"outputs; got {tuple(mask.shape)}"
                )
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be a boolean tensor, got dtype {mask.dtype}")
            pairs = mask.detach().to("cpu").nonzero()  # row-major already
        else:
            pairs = self._check_edge_tensor(edges, n)
        into_clamped = pairs[pairs[:, 1] < self.n_clamped] if len(pairs) else pairs
        if len(into_clamped):
            i, j = (int(v) for v in into_clamped[0])
            kind = "bias" if self.bias and j == self.n_inputs else "input"
            raise ValueError(
                f"invalid edge ({i}, {j}): neuron {j} is the {kind} neuron and is clamped; "
                f"edges may only enter hidden and output neurons (indices {self.n_clamped}.."
                f"{n - 1})"
            )
        pairs = pairs.to(torch.long).contiguous()
        _set(self, "_edges", pairs)
        _set(self, "_dense", None)
        key = (self.n_inputs, self.n_hidden, self.n_outputs, self.bias)
        _set(self, "_hash", hash((key, _bytes_hash(pairs))))

    @staticmethod
    def _check_edge_tensor(edges: object, n: int) -> torch.Tensor:
        """(P, 2) long pairs in range, without duplicates, sorted row-major."""
        pairs = torch.as_tensor(edges)
        if pairs.numel() == 0:
            return torch.zeros(0, 2, dtype=torch.long)
        if pairs.dim() != 2 or pairs.shape[1] != 2:
            raise ValueError(f"edges must have shape (P, 2), got {tuple(pairs.shape)}")
        if pairs.dtype.is_floating_point or pairs.dtype == torch.bool:
            raise TypeError(f"edges must hold integer neuron indices, got dtype {pairs.dtype}")
        pairs = pairs.detach().to("cpu", torch.long)
        bad = ((pairs < 0) | (pairs >= n)).any(dim=1).nonzero()
        if len(bad):
            k = int(bad[0])
            i, j = (int(v) for v in pairs[k])
            raise ValueError(
                f"edge #{k} ({i}, {j}) is out of range: neuron indices run from 0 to {n - 1}"
            )
        keys = pairs[:, 0] * n + pairs[:, 1]
        order = torch.argsort(keys, stable=True)
        keys = keys[order]  # sorted once; the unsorted keys are freed (peak memory O(P))
        repeated = (keys[1:] == keys[:-1]).nonzero()
        del keys
        if len(repeated):
            k = int(order[int(repeated[0]) + 1])
            i, j = (int(v) for v in pairs[k])
            raise ValueError(f"duplicate edge ({i}, {j}) at position {k}")
        return pairs[order]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"Topology is immutable: cannot set {name!r}; build a new one (e.g. with_edges)"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Topology is immutable: cannot delete {name!r}")

    def __reduce__(self):  # pickling (multiprocessing, deepcopy) rebuilds through __init__
        return (
            _rebuild,
            (
                self.n_inputs,
                self.n_hidden,
                self.n_outputs,
                self.bias,
                self._edges,
                self.layer_sizes,
            ),
        )

    # ------------------------------------------------------------------ edges
    @property
    def mask(self) -> torch.Tensor:
        """The N×N boolean mask of allowed edges: a fresh copy (editing it changes nothing)."""
        return self.dense_mask().clone()

    def dense_mask(self) -> torch.Tensor:
        """The N×N mask as a read-only shared tensor (do not modify): built once, on demand."""
        if self._dense is None:
            n = self.n_neurons
            dense = torch.zeros(n, n, dtype=torch.bool)
            if len(self._edges):
                dense[self._edges[:, 0], self._edges[:, 1]] = True
            object.__setattr__(self, "_dense", dense)
        assert self._dense is not None
        return self._dense

    @property
    def edges(self) -> torch.Tensor:
        """(P, 2) LongTensor of (source, target) pairs in row-major order: the order in which
        engines enumerate parameters (a copy)."""
        return self._edges.clone()

    @property
    def edge_sources(self) -> torch.Tensor:
        """(P,) the source neuron of every edge, in :attr:`edges` order (a copy of that column
        alone: half the memory of ``edges[:, 0]``, which copies both)."""
        return self._edges[:, 0].clone(memory_format=torch.contiguous_format)

    @property
    def edge_targets(self) -> torch.Tensor:
        """(P,) the target neuron of every edge, in :attr:`edges` order (a copy)."""
        return self._edges[:, 1].clone(memory_format=torch.contiguous_format)

    def edge_list(self) -> list[tuple[int, int]]:
        """The edges as a list of (source, target) int pairs, row-major."""
        return [(int(i), int(j)) for i, j in self._edges.tolist()]

    def with_edges(
        self,
        add: Iterable[tuple[int, int]] | torch.Tensor = (),
        remove: Iterable[tuple[int, int]] | torch.Tensor = (),
    ) -> Topology:
        """A new topology with the edges ``add`` added and ``remove`` removed (same counts).

        Adding an edge that exists, or removing one that does not, is an error naming it.
        """
        n = self.n_neurons
        add_t = self._check_edge_tensor(_as_pairs(add), n)
        remove_t = self._check_edge_tensor(_as_pairs(remove), n)
        keys = self._edges[:, 0] * n + self._edges[:, 1]
        add_keys = add_t[:, 0] * n + add_t[:, 1]
        remove_keys = remove_t[:, 0] * n + remove_t[:, 1]
        present = torch.isin(add_keys, keys)
        if present.any():
            i, j = (int(v) for v in add_t[int(present.nonzero()[0])])
            raise ValueError(f"cannot add edge ({i}, {j}): it is already in the topology")
        missing = ~torch.isin(remove_keys, keys)
        if missing.any():
            i, j = (int(v) for v in remove_t[int(missing.nonzero()[0])])
            raise ValueError(f"cannot remove edge ({i}, {j}): it is not in the topology")
        kept = self._edges[~torch.isin(keys, remove_keys)]
        return Topology(
            self.n_inputs,
            self.n_hidden,
            self.n_outputs,
            self.bias,
            edges=torch.cat([kept, add_t]),
        )

    def thinned(self, fraction: float, seed: int | None = None) -> Topology:
        """A new topology keeping a uniformly random ``fraction`` of this one's edges
        (``max(1, round(fraction · P))`` of the P edges, drawn without replacement in O(P)
        memory, seeded by ``seed``): the sparse start of a structure rule on a mesh that was
        already sparse, e.g. a :meth:`sparse_random` mesh at 10 % of its edges."""
        fraction = float(fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        P = self.n_edges
        keep = min(P, max(1, round(fraction * P)))
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else int(seed))
        chosen = torch.sort(torch.randperm(P, generator=generator)[:keep]).values
        return Topology(
            self.n_inputs,
            self.n_hidden,
            self.n_outputs,
            self.bias,
            edges=self._edges[chosen],
        )

    # ------------------------------------------------------------------ sizes
    @property
    def n_neurons(self) -> int:
        """N: inputs + bias + hidden + outputs."""
        return self.n_inputs + int(self.bias) + self.n_hidden + self.n_outputs

    @property
    def n_clamped(self) -> int:
        """Input neurons plus the bias neuron: their state is set, never computed."""
        return self.n_inputs + int(self.bias)

    @property
    def n_free(self) -> int:
        """Hidden plus output neurons: the neurons whose state follows S_n = φ̂(S_{n-1}A)."""
        return self.n_hidden + self.n_outputs

    @property
    def bias_index(self) -> int | None:
        return self.n_inputs if self.bias else None

    @property
    def output_slice(self) -> slice:
        return slice(self.n_neurons - self.n_outputs, self.n_neurons)

    @property
    def n_edges(self) -> int:
        """P: the number of edges (trainable weights)."""
        return len(self._edges)

    def allowed_mask(self, output_feedback: bool = True) -> torch.Tensor:
        """Every edge a topology of these sizes may have (see :meth:`mesh`)."""
        return self._allowed(
            self.n_inputs, self.n_hidden, self.n_outputs, self.bias, output_feedback
        )

    # --------------------------------------------------------------- builders
    @staticmethod
    def _allowed(
        inputs: int, hidden: int, outputs: int, bias: bool, output_feedback: bool
    ) -> torch.Tensor:
        n = inputs + int(bias) + hidden + outputs
        clamped = inputs + int(bias)
        allowed = torch.zeros(n, n, dtype=torch.bool)
        allowed[:, clamped:] = True
        if not output_feedback:
            allowed[n - outputs :, :] = False
        return allowed

    @classmethod
    def mesh(
        cls,
        inputs: int,
        hidden: int,
        outputs: int,
        bias: bool = True,
        output_feedback: bool = True,
    ) -> Topology:
        """Every allowed edge: from any neuron into every hidden and output neuron.

        With ``output_feedback=False`` output neurons have no outgoing edges (the masking of
        the paper's reference implementation: edges only from input/hidden into hidden/output).
        """
        _check_count("inputs", inputs, 0)
        _check_count("hidden", hidden, 0)
        _check_count("outputs", outputs, 1)
        n = inputs + int(bias) + hidden + outputs
        rows = n if output_feedback else n - outputs
        _check_build_memory("Topology.mesh", n, rows * (hidden + outputs), dense=True)
        mask = cls._allowed(inputs, hidden, outputs, bias, output_feedback)
        return cls(inputs, hidden, outputs, bias, mask)

    @classmethod
    def random(
        cls,
        inputs: int,
        hidden: int,
        outputs: int,
        density: float = 0.5,
        bias: bool = True,
        seed: int | None = None,
        output_feedback: bool = True,
    ) -> Topology:
        """Keep a random ``density`` fraction of the allowed edges (exactly round(density·E)).

        ``density`` is the fraction *kept*: the published experiments of paper 001 quote the
        fraction removed (sparsity 0.85 → ``density=0.15``).
        """
        density = float(density)
        if not 0.0 < density <= 1.0 or np.isnan(density):
            raise ValueError(f"density must be in (0, 1], got {density}")
        _check_count("inputs", inputs, 0)
        _check_count("hidden", hidden, 0)
        _check_count("outputs", outputs, 1)
        n = inputs + int(bias) + hidden + outputs
        clamped = inputs + int(bias)
        free = n - clamped
        rows = n if output_feedback else n - outputs  # sources: every neuron but (maybe) outputs
        total = rows * free  # allowed edges, row-major: candidate k is (k // free, C + k % free)
        keep = max(1, round(density * total))
        _check_build_memory("Topology.random", n, keep, dense=False)
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        if total <= RANDOM_DENSE_LIMIT:  # the original draw (figures depend on it): O(total)
            chosen = torch.randperm(total, generator=generator)[:keep]
        else:  # O(keep) memory: never anything of size N² (see _sample_without_replacement)
            chosen = _sample_without_replacement(total, keep, generator)
        edges = torch.stack([chosen // free, clamped + chosen % free], dim=1)
        return cls(inputs, hidden, outputs, bias, edges=edges)

    @classmethod
    def sparse_random(
        cls,
        inputs: int,
        hidden: int,
        outputs: int,
        degree: float = 10.0,
        fan_in: int = SPARSE_RANDOM_FAN_IN,
        bias: bool = True,
        seed: int | None = None,
    ) -> Topology:
        """A large sparse mesh whose inputs reach the outputs in two ticks, in O(P) memory.

        A uniform :meth:`random` mesh of mean degree d over N neurons leaves almost every output
        more than two hops from any input when N ≫ d² (at N = 10⁵, d = 10 the outputs barely
        depend on the input at T = 2).  This builder wires the roles instead:

        - every hidden neuron gets ``fan_in`` edges from distinct random data inputs (all of
          them when ``fan_in >= inputs``);
        - the bias neuron (``bias=True``) feeds every hidden and output neuron;
        - every hidden neuron feeds one output, the outputs taken in a random balanced order
          (each output gets ⌊H/O⌋ or ⌈H/O⌉ hidden in-edges; needs ``hidden >= outputs``);
        - the remaining ``round(degree · N) −`` (the edges above) are drawn uniformly without
          replacement among the H² hidden → hidden pairs (cycles and self-loops allowed).

        So P = max(round(degree · N), the wired edges) and the mean degree is P / N.  Every edge
        enters a hidden or output neuron (clamped neurons have none, the rule of :meth:`mesh`)
        and outputs have no outgoing edge, so the topology is valid with or without output
        feedback.  Nothing of size N² is allocated: the draws are O(P)
        (:func:`_sample_without_replacement` over the H² hidden pairs).
        """
        _check_count("inputs", inputs, 0)
        _check_count("hidden", hidden, 1)
        _check_count("outputs", outputs, 1)
        _check_count("fan_in", fan_in, 0)
        degree = float(degree)
        if not degree > 0 or np.isinf(degree):
            raise ValueError(f"degree must be a positive finite number, got {degree}")
        if hidden < outputs:
            raise ValueError(
                f"sparse_random feeds every output from hidden neurons: needs hidden >= outputs, "
                f"got {hidden} hidden and {outputs} outputs"
            )
        edges = _sparse_random_edges(inputs, hidden, outputs, degree, fan_in, bias, seed)
        return cls(inputs, hidden, outputs, bias, edges=edges)

    @classmethod
    def chain(
        cls, inputs: int, length: int, outputs: int, bias: bool = True, *, features: int = 0
    ) -> Topology:
        """A delay line as memory: every input feeds the first hidden neuron, hidden neuron k
        feeds k + 1 (a chain of ``length``), every hidden neuron feeds every output, and the
        bias feeds every free neuron.  At one tick per element, chain neuron k holds what
        the input was k elements ago (if its weights keep it); the outputs read the taps.

        With ``features`` > 0, that many feature neurons come first among the hidden ones
        (neurons ``inputs + bias`` …): every input feeds every feature neuron, and every
        feature neuron feeds the first chain neuron and every output, so that the line can
        carry a nonlinear function of the input (a product of two inputs, for the adding
        problem) instead of the input itself.  Hidden neurons: ``features + length``.

        Good for: recalling what came a fixed number of elements ago (up to ``length``);
        the readout only has to learn which tap to read (see ``unit_gain_``)."""
        _check_count("inputs", inputs, 1)
        _check_count("length", length, 1)
        _check_count("outputs", outputs, 1)
        _check_count("features", features, 0)
        f = inputs + int(bias)  # the first hidden (feature) neuron
        c = f + features  # the first chain neuron
        feature = torch.arange(f, c)
        hidden = torch.arange(c, c + length)
        out = torch.arange(c + length, c + length + outputs)
        sources = torch.arange(inputs)
        blocks = [
            torch.stack([sources, torch.full((inputs,), c)], 1),
            torch.stack([hidden[:-1], hidden[1:]], 1),
            torch.cartesian_prod(hidden, out),
        ]
        if features:
            blocks += [
                torch.cartesian_prod(sources, feature),
                torch.stack([feature, torch.full((features,), c)], 1),
                torch.cartesian_prod(feature, out),
            ]
        if bias:
            free = torch.arange(f, c + length + outputs)
            blocks.append(torch.stack([torch.full_like(free, inputs), free], 1))
        return cls(inputs, features + length, outputs, bias, edges=torch.cat(blocks))

    @classmethod
    def ring(cls, inputs: int, length: int, outputs: int, bias: bool = True) -> Topology:
        """:meth:`chain` closed into a cycle: the last hidden neuron also feeds the first.

        Good for: periodic memory and clocks (a value goes round in ``length`` elements, so
        the ring can count time modulo its length); what was stored ``length`` elements ago
        comes back and mixes with the new input, so for plain recall a chain longer than the
        delay is the cleaner memory."""
        base = cls.chain(inputs, length, outputs, bias)
        first = inputs + int(bias)
        if length == 1:
            return base.with_edges(add=[(first, first)])
        return base.with_edges(add=[(first + length - 1, first)])

    @classmethod
    def self_loops(cls, inputs: int, hidden: int, outputs: int, bias: bool = True) -> Topology:
        """A recurrent layer whose only recurrence is one self-loop per hidden neuron: every
        input feeds every hidden neuron, each hidden neuron feeds itself and every output, the
        bias feeds every free neuron.

        Good for: leaky integrators and traces of the input (a self-loop of weight near 1
        keeps a running memory that fades at its own rate), and cheap exact online learning:
        a hidden neuron's state depends on its own in-edges only, so SnAp of order 1 is exact
        RTRL here.  It cannot route information between hidden neurons over time, so it does
        not recall the value of a precise past element."""
        _check_count("inputs", inputs, 0)
        _check_count("hidden", hidden, 1)
        _check_count("outputs", outputs, 1)
        first = inputs + int(bias)
        layer = torch.arange(first, first + hidden)
        return cls(
            inputs,
            hidden,
            outputs,
            bias,
            edges=_recurrent_layer(inputs, hidden, outputs, bias, torch.stack([layer, layer], 1)),
        )

    @classmethod
    def reservoir(
        cls,
        inputs: int,
        hidden: int,
        outputs: int,
        degree: float = 4.0,
        bias: bool = True,
        seed: int | None = None,
    ) -> Topology:
        """Sparse random recurrence (an echo-state reservoir's graph): every input feeds every
        hidden neuron, ``round(degree · hidden)`` hidden → hidden edges are drawn uniformly
        without replacement (self-loops allowed; ``degree`` is the mean recurrent fan-in),
        every hidden neuron feeds every output, the bias feeds every free neuron.

        Good for: a rich fading memory of the recent input at a chosen time scale; set the
        recurrent weights' spectral radius with ``spectral_radius_`` (near 1: long memory,
        near the edge of chaos; small: short memory)."""
        _check_count("inputs", inputs, 0)
        _check_count("hidden", hidden, 1)
        _check_count("outputs", outputs, 1)
        degree = float(degree)
        if not 0 < degree <= hidden:
            raise ValueError(f"degree must be in (0, hidden = {hidden}], got {degree}")
        first = inputs + int(bias)
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        keep = max(1, round(degree * hidden))
        chosen = torch.randperm(hidden * hidden, generator=generator)[:keep]
        recurrent = torch.stack([first + chosen // hidden, first + chosen % hidden], 1)
        return cls(
            inputs,
            hidden,
            outputs,
            bias,
            edges=_recurrent_layer(inputs, hidden, outputs, bias, recurrent),
        )

    @classmethod
    def layered(cls, sizes: Sequence[int], bias: bool = True) -> Topology:
        """An MLP with layer sizes ``[N_0, ..., N_L]`` as the block adjacency matrix of paper 000
        Fig. 1: layer h−1 feeds layer h through the block W_h, and the bias neuron feeds every
        non-input neuron.  ``ticks = L`` ticks carry the input to the outputs.
        """
        sizes = [_check_count(f"sizes[{k}]", s, 1) for k, s in enumerate(sizes)]
        if len(sizes) < 2:
            raise ValueError(f"layered needs at least an input and an output size, got {sizes}")
        inputs, outputs = sizes[0], sizes[-1]
        hidden = sum(sizes[1:-1])
        blocks = []
        starts = [0]
        position = inputs + int(bias)
        for size in sizes[1:]:
            starts.append(position)
            position += size
        for h in range(1, len(sizes)):
            src, dst = starts[h - 1], starts[h]
            sources = torch.arange(src, src + sizes[h - 1])
            if bias:
                sources = torch.cat([sources, torch.tensor([inputs])])
            targets = torch.arange(dst, dst + sizes[h])
            blocks.append(torch.cartesian_prod(sources, targets).reshape(-1, 2))
        edges = torch.cat(blocks)  # the constructor sorts them row-major; no N×N mask
        return cls(inputs, hidden, outputs, bias, layer_sizes=tuple(sizes), edges=edges)

    @classmethod
    def from_edges(
        cls,
        inputs: int,
        hidden: int,
        outputs: int,
        edges: Iterable[tuple[int, int]],
        bias: bool = True,
    ) -> Topology:
        """A topology with exactly the given edges (i, j): from neuron i into neuron j.

        ``edges`` is any iterable of pairs or a (P, 2) integer tensor; nothing of size N×N is
        allocated."""
        _check_count("inputs", inputs, 0)
        _check_count("hidden", hidden, 0)
        _check_count("outputs", outputs, 1)
        if not isinstance(edges, torch.Tensor):
            pairs = []
            for k, edge in enumerate(edges):
                try:
                    i, j = (int(v) for v in edge)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"edge #{k} must be a pair of neuron indices, got {edge!r}"
                    ) from None
                pairs.append((i, j))
            edges = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        return cls(inputs, hidden, outputs, bias, edges=edges)

    # --------------------------------------------------------------- networkx
    def role(self, neuron: int) -> str:
        """'input', 'bias', 'hidden' or 'output'."""
        if neuron < self.n_inputs:
            return "input"
        if self.bias and neuron == self.n_inputs:
            return "bias"
        if neuron < self.n_neurons - self.n_outputs:
            return "hidden"
        return "output"

    def to_networkx(self, weights: torch.Tensor | None = None) -> nx.DiGraph:
        """A DiGraph with nodes 0..N-1 (attribute ``role``) and one edge per allowed weight;
        with ``weights`` (an N×N matrix such as ``net.A``) edges carry a ``weight`` attribute."""
        graph = nx.DiGraph(
            inputs=self.n_inputs, hidden=self.n_hidden, outputs=self.n_outputs, bias=self.bias
        )
        for k in range(self.n_neurons):
            graph.add_node(k, role=self.role(k))
        w = None if weights is None else weights.detach().to("cpu", torch.float64).numpy()
        for i, j in self.edge_list():
            if w is None:
                graph.add_edge(i, j)
            else:
                graph.add_edge(i, j, weight=float(w[i, j]))
        return graph

    @classmethod
    def from_networkx(cls, graph: nx.DiGraph) -> Topology:
        """Inverse of :meth:`to_networkx`: nodes must be 0..N-1, each with a ``role`` attribute,
        in IHO order (or the graph carries ``inputs``/``hidden``/``outputs``/``bias``)."""
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"expected a networkx.DiGraph, got {type(graph).__name__}")
        nodes = sorted(graph.nodes)
        if nodes != list(range(len(nodes))):
            raise ValueError("graph nodes must be the integers 0..N-1 in IHO order")
        if {"inputs", "hidden", "outputs", "bias"} <= set(graph.graph):
            counts = (graph.graph["inputs"], graph.graph["hidden"], graph.graph["outputs"])
            bias = bool(graph.graph["bias"])
        else:
            roles = [graph.nodes[k].get("role") for k in nodes]
            unknown = [
                k for k, r in enumerate(roles) if r not in {"input", "bias", "hidden", "output"}
            ]
            if unknown:
                raise ValueError(
                    f"node {unknown[0]} has role {roles[unknown[0]]!r}; expected one of "
                    "'input', 'bias', 'hidden', 'output'"
                )
            counts = (roles.count("input"), roles.count("hidden"), roles.count("output"))
            bias = "bias" in roles
            expected = (
                ["input"] * counts[0]
                + ["bias"] * int(bias)
                + ["hidden"] * counts[1]
                + ["output"] * counts[2]
            )
            if roles != expected:
                raise ValueError("node roles are not in IHO order: inputs, bias, hidden, outputs")
        return cls.from_edges(*counts, edges=list(graph.edges), bias=bias)

    # ------------------------------------------------------------- utilities
    def to_dict(self) -> dict:
        """A JSON-serialisable description (used by checkpoints)."""
        return {
            "n_inputs": self.n_inputs,
            "n_hidden": self.n_hidden,
            "n_outputs": self.n_outputs,
            "bias": self.bias,
            "edges": self.edge_list(),
            "layer_sizes": None if self.layer_sizes is None else list(self.layer_sizes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Topology:
        sizes = data.get("layer_sizes")
        return cls(
            data["n_inputs"],
            data["n_hidden"],
            data["n_outputs"],
            bool(data["bias"]),
            layer_sizes=None if sizes is None else tuple(sizes),
            edges=torch.tensor([list(e) for e in data["edges"]], dtype=torch.long).reshape(-1, 2),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return (self.n_inputs, self.n_hidden, self.n_outputs, self.bias) == (
            other.n_inputs,
            other.n_hidden,
            other.n_outputs,
            other.bias,
        ) and torch.equal(self._edges, other._edges)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return (
            f"Topology(inputs={self.n_inputs}, bias={self.bias}, hidden={self.n_hidden}, "
            f"outputs={self.n_outputs}, edges={self.n_edges})"
        )


def _recurrent_layer(
    inputs: int, hidden: int, outputs: int, bias: bool, recurrent: torch.Tensor
) -> torch.Tensor:
    """The edges of one recurrent hidden layer: every input feeds every hidden neuron, the
    hidden → hidden edges ``recurrent`` (k, 2), every hidden neuron feeds every output, and the
    bias (when there is one) feeds every free neuron."""
    first = inputs + int(bias)
    layer = torch.arange(first, first + hidden)
    out = torch.arange(first + hidden, first + hidden + outputs)
    blocks = [
        torch.cartesian_prod(torch.arange(inputs), layer).reshape(-1, 2),
        recurrent,
        torch.cartesian_prod(layer, out),
    ]
    if bias:
        free = torch.arange(first, first + hidden + outputs)
        blocks.append(torch.stack([torch.full_like(free, inputs), free], 1))
    return torch.cat(blocks)


def _bytes_hash(tensor: torch.Tensor) -> int:
    """A hash of a contiguous CPU tensor's bytes, read in place (BLAKE2b of the buffer: no copy
    of the edge list, unlike ``hash(tensor.numpy().tobytes())``)."""
    digest = hashlib.blake2b(tensor.numpy().data, digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _sparse_random_edges(
    inputs: int, hidden: int, outputs: int, degree: float, fan_in: int, bias: bool, seed: int | None
) -> torch.Tensor:
    """The edge list of :meth:`Topology.sparse_random` (checked arguments), unsorted.  A function
    of its own so that its blocks and draws are freed before the topology sorts and checks the
    edges (the peak memory of a build is then the edge list and the sort's temporaries)."""
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    C = inputs + int(bias)
    first_output = C + hidden
    n = first_output + outputs
    hidden_ids = torch.arange(C, first_output)
    blocks = []
    k = min(fan_in, inputs)
    if k:  # k distinct inputs per hidden neuron: the k smallest of H rows of random keys
        if k * k <= inputs:  # few of many: rejection of repeats keeps memory O(H·k)
            chosen = _distinct_per_row(hidden, inputs, k, generator)
        else:
            chosen = torch.rand(hidden, inputs, generator=generator).argsort(1)[:, :k]
        blocks.append(torch.stack([chosen.reshape(-1), hidden_ids.repeat_interleave(k)], 1))
    if bias:
        free = torch.arange(C, n)
        blocks.append(torch.stack([torch.full_like(free, inputs), free], 1))
    balanced = torch.arange(hidden) % outputs
    targets = first_output + balanced[torch.randperm(hidden, generator=generator)]
    blocks.append(torch.stack([hidden_ids, targets], 1))
    wired = sum(len(b) for b in blocks)
    extra = round(degree * n) - wired
    if extra > hidden * hidden:
        raise ValueError(
            f"degree {degree} needs {extra} hidden -> hidden edges but there are only "
            f"{hidden * hidden} hidden pairs"
        )
    if extra > 0:
        pairs = _sample_without_replacement(hidden * hidden, extra, generator)
        blocks.append(torch.stack([C + pairs // hidden, C + pairs % hidden], 1))
    return torch.cat(blocks)


def _sample_without_replacement(total: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """``keep`` distinct integers drawn uniformly from [0, total) in O(keep) memory.

    Draws independent uniform integers until ``keep`` distinct values are seen, then keeps a
    uniformly random ``keep`` of them.  The procedure commutes with every relabelling of
    [0, total), so every ``keep``-subset is equally likely (the same law as ``randperm``'s
    prefix, not the same draws).
    """
    if keep > total:
        raise ValueError(f"cannot keep {keep} of {total} candidates")
    if 2 * keep > total:  # dense: the complement is the small side only when total is small
        return torch.randperm(total, generator=generator)[:keep]
    seen = torch.empty(0, dtype=torch.long)
    while len(seen) < keep:
        missing = keep - len(seen)
        extra = int(missing * total / (total - len(seen))) + 64  # expected misses included
        draws = torch.randint(0, total, (extra,), generator=generator, dtype=torch.long)
        seen = torch.unique(torch.cat([seen, draws]))
    return seen[torch.randperm(len(seen), generator=generator)[:keep]]


def _distinct_per_row(rows: int, values: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, k) integers in [0, values), distinct within each row, each row a uniform k-subset.

    Draws k values per row and redraws the rows with a repeat (rejection: an accepted row is a
    uniform ordered k-tuple of distinct values, so a uniform k-subset); used with k² ≤ values,
    where a row repeats with probability at most k(k−1) / (2·values) < 1/2.
    """
    out = torch.randint(0, values, (rows, k), generator=generator)
    todo = torch.arange(rows)
    while True:
        block = out[todo].sort(dim=1).values
        repeated = (block[:, 1:] == block[:, :-1]).any(dim=1)
        todo = todo[repeated]
        if len(todo) == 0:
            return out
        out[todo] = torch.randint(0, values, (len(todo), k), generator=generator)


def _as_pairs(edges: Iterable[tuple[int, int]] | torch.Tensor) -> torch.Tensor:
    if isinstance(edges, torch.Tensor):
        return edges
    pairs = [tuple(e) for e in edges]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"edges must be (source, target) pairs, got {pairs!r}")
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def _rebuild(
    n_inputs: int,
    n_hidden: int,
    n_outputs: int,
    bias: bool,
    edges: torch.Tensor,
    layer_sizes: tuple[int, ...] | None,
) -> Topology:
    return Topology(n_inputs, n_hidden, n_outputs, bias, layer_sizes=layer_sizes, edges=edges)
