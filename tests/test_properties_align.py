"""Properties of core.align on random graphs with branches, concatenations and residual adds.

The destination is the same graph as a Gluon port would list it: default names that say nothing
of the source (`net0_conv3_fwd`), NCHW shapes, independent branches listed in another order, and,
in some graphs, every BatchNorm folded into the conv before it. Alignment must pair each source
layer with its true partner or leave it unmatched: never a crosswise pair."""
import os

from hypothesis import event, given, settings
from hypothesis import strategies as st

from xvalidate.core.align import align
from xvalidate_adapters.base import LayerInfo

HW = 8
EXAMPLES = int(os.environ.get("XVALIDATE_PROPERTY_EXAMPLES", 300))  # make mutation lowers it
channels = st.sampled_from([8, 16])  # few widths: branches of one width are the tempting crosswise pairs


class Graph:
    """A source graph under construction; each node records its destination twin."""

    def __init__(self):
        self.nodes = []          # (name, kind, channels, inputs)
        self.count = 0

    def add(self, kind, c, inputs):
        name = f"{kind}_{self.count}"
        self.count += 1
        self.nodes.append((name, kind, c, list(inputs)))
        return name, c


@st.composite
def chain(draw, graph, head, length=None):
    """conv [bn] relu, repeated; returns the last (name, channels)."""
    for _ in range(length or draw(st.integers(1, 2))):
        c = draw(channels)
        head = graph.add("conv", c, [head[0]] if head else [])
        if draw(st.booleans()):
            head = graph.add("bn", c, [head[0]])
        head = graph.add("relu", c, [head[0]])
    return head


@st.composite
def graphs(draw):
    """A source graph and, per branch block, the order its branches are listed in the destination."""
    graph = Graph()
    head = draw(chain(graph, None, 1))
    orders = []
    for _ in range(draw(st.integers(1, 4))):
        block = draw(st.sampled_from(["chain", "concat", "add", "residual"]))
        if block == "chain":
            head = draw(chain(graph, head))
            continue
        if block == "residual":
            start = len(graph.nodes)
            c = head[1]
            conv = graph.add("conv", c, [head[0]])
            branch = graph.add("bn", c, [conv[0]]) if draw(st.booleans()) else conv
            head = graph.add("relu", c, [graph.add("add", c, [head[0], branch[0]])[0]])
            continue
        branches, ends = [], []
        width = draw(channels)
        for _ in range(draw(st.integers(2, 3))):
            start = len(graph.nodes)
            end = head
            for _ in range(draw(st.integers(1, 2))):
                c = width if block == "add" else draw(channels)
                end = graph.add("conv", c, [end[0]])
                end = graph.add("relu", c, [end[0]])
            branches.append(list(range(start, len(graph.nodes))))
            ends.append(end)
        orders.append((branches, draw(st.permutations(range(len(branches))))))
        c = sum(e[1] for e in ends) if block == "concat" else width
        head = graph.add(block, c, [e[0] for e in ends])
    return graph, orders, draw(st.booleans())


def destination(graph, orders, fold_bn):
    """The twin graph as a Gluon port lists it, and the true pairing {source layer: dst tensor or None}."""
    order = list(range(len(graph.nodes)))
    for branches, perm in orders:  # list the branches of each block in another order
        flat = [i for b in branches for i in b]
        at = order.index(flat[0])
        order[at:at + len(flat)] = [i for k in perm for i in branches[k]]
    folded = {}  # a folded bn's source name -> its conv's source name
    if fold_bn:
        folded = {name: inputs[0] for name, kind, _, inputs in graph.nodes if kind == "bn"}
    counters, twin = {}, {}
    for i in order:
        name, kind, c, inputs = graph.nodes[i]
        if name in folded:
            continue
        twin[name] = f"net0_{kind}{counters.setdefault(kind, 0)}_fwd"
        counters[kind] += 1
    for bn, conv in folded.items():
        twin[bn] = twin.pop(conv)  # the conv's output is the source BatchNorm's
    dst = []
    renamed = dict(twin)
    for i in order:
        name, kind, c, inputs = graph.nodes[i]
        if name in folded:
            continue
        source_name = next((bn for bn, conv in folded.items() if conv == name), name)
        dst_inputs = [renamed[folded_bn_of(x, folded)] for x in inputs]
        dst.append(LayerInfo(twin[source_name], kind, (None, c, HW, HW), "NCHW", [kind], dst_inputs))
    truth = {name: twin.get(name) for name, *_ in graph.nodes}
    return dst, truth


def folded_bn_of(name, folded):
    """The source name whose twin holds `name`'s output: a folded conv's output is its bn's."""
    return next((bn for bn, conv in folded.items() if conv == name), name)


def source_layers(graph):
    return [LayerInfo(name, kind, (None, HW, HW, c), "NHWC", [kind], inputs) for name, kind, c, inputs in graph.nodes]


@given(graphs())
@settings(max_examples=EXAMPLES, deadline=None)
def test_no_crosswise_pairs(drawn):
    graph, orders, fold_bn = drawn
    dst, truth = destination(graph, orders, fold_bn)
    alignment = align(source_layers(graph), dst)
    for pair in alignment.pairs:
        if pair.dst is not None:
            assert pair.dst == truth[pair.src], (pair, [(n, k, i) for n, k, _, i in graph.nodes], orders, fold_bn)
    paired = sum(p.dst is not None for p in alignment.pairs)
    event(f"paired {10 * paired // len(alignment.pairs) * 10}% of the source layers")


@given(graphs())
@settings(max_examples=min(100, EXAMPLES), deadline=None)
def test_same_order_without_folding_pairs_everything(drawn):
    """With the branches listed in the source's order and nothing folded, every layer finds its twin."""
    graph, orders, _ = drawn
    dst, truth = destination(graph, [(b, list(range(len(b)))) for b, _ in orders], False)
    alignment = align(source_layers(graph), dst)
    assert {p.src: p.dst for p in alignment.pairs} == truth
