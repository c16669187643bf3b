"""Rendering a graph: the SVG is well-formed and says what the graph is; DOT lists every edge;
``score_terms`` agrees with the thesis' Figure 11 estimators; a Temporal is framed with its carry edges; no edge
crosses a label; the matplotlib figure (PNG) shows the same texts. Budget: < 10 s."""
import itertools
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import _draw, baselines, dist, render
from scg.testing import random_graphs

NS = {"svg": "http://www.w3.org/2000/svg"}


def readme_graph():
    g = scg.Graph("readme")
    theta = g.input("theta")
    x = g.stochastic("x", lambda theta: dist.Normal(theta, 1.0), theta)
    z = g.stochastic("z", lambda x: dist.Bernoulli(logits=x), x)
    y = g.deterministic("y", lambda x, z: jnp.sin(x) + z, x, z)
    g.cost("f", lambda y, theta: (y - theta) ** 2, y, theta)
    return g


def chain_graph():
    """Figure 11 (5): θ, x0 -> x1 -> x2 with costs f1(x1), f2(x2); plus a simulated node and an expectation."""
    g = scg.Graph("chain")
    theta, x0 = g.input("theta"), g.input("x0")
    x1 = g.stochastic("x1", lambda t, a: dist.Normal(t + a, 1.0), theta, x0, estimator="score", baseline="x0")
    x2 = g.stochastic("x2", lambda t, a: dist.Normal(t * a, 1.0), theta, x1, estimator="score",
                      baseline=baselines.LeaveOneOut())
    g.cost("f1", lambda a: a**2, x1)
    g.cost("f2", lambda a: a**2, x2)
    s = g.simulate("s", lambda k, a: a + jax.random.normal(k), x2)
    e = g.expectation("e", lambda s, a: s * a, lambda s: dist.Bernoulli(logits=s), s)
    g.deterministic("d", lambda e: 2.0 * e, e)
    return g


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def node_groups(root) -> dict:
    return {g.get("id")[len("node-"):]: g for g in root.iterfind(".//svg:g", NS) if "node" in g.get("class", "").split()}


def shapes(group, tag, cls="shape"):
    return [e for e in group.iterfind(f"svg:{tag}", NS) if e.get("class") == cls]


@pytest.mark.parametrize("make", [readme_graph, chain_graph])
def test_svg_has_one_shape_per_node_and_marks_costs(make):
    g = make()
    root = parse(render.to_svg(g))
    groups = node_groups(root)
    assert set(groups) == {n.name for n in g.nodes}
    for n in g.nodes:
        grp = groups[n.name]
        assert n.kind in grp.get("class").split()
        circles, rects = shapes(grp, "circle"), shapes(grp, "rect")
        if n.kind in ("stochastic", "simulate"):
            assert (len(circles), len(rects)) == (1, 0), n
        elif n.kind in ("deterministic", "cost", "expectation"):
            assert (len(circles), len(rects)) == (0, 1), n
        else:  # inputs are plain symbols, as in the thesis
            assert (len(circles), len(rects)) == (0, 0), n
        assert len(shapes(grp, "rect", "cost-marker")) == (n.kind == "cost"), n
    all_circles = [c for grp in groups.values() for c in shapes(grp, "circle")]
    all_rects = [r for grp in groups.values() for r in shapes(grp, "rect")]
    assert len(all_circles) == sum(n.kind in ("stochastic", "simulate") for n in g.nodes)
    assert len(all_rects) == sum(n.kind in ("deterministic", "cost", "expectation") for n in g.nodes)


def test_simulate_and_expectation_are_distinguishable():
    groups = node_groups(parse(render.to_svg(chain_graph())))
    assert shapes(groups["s"], "circle")[0].get("stroke-dasharray")  # dashed: no density
    assert not shapes(groups["x1"], "circle")[0].get("stroke-dasharray")
    assert shapes(groups["e"], "rect")[0].get("stroke-dasharray")
    assert not shapes(groups["d"], "rect")[0].get("stroke-dasharray")


@pytest.mark.parametrize("make", [readme_graph, chain_graph])
def test_svg_draws_every_edge_as_an_arrow(make):
    g = make()
    root = parse(render.to_svg(g))
    edges = [(p.get("data-src"), p.get("data-dst")) for p in root.iterfind(".//svg:path", NS) if p.get("class") == "edge"]
    want = [(p, n.name) for n in g.nodes for p in dict.fromkeys(n.parents)]
    assert sorted(edges) == sorted(want)
    assert all(p.get("marker-end") == "url(#arrow)" for p in root.iterfind(".//svg:path", NS) if p.get("class") == "edge")


def est_label(root, name):
    return [t.text for t in node_groups(root)[name].iterfind("svg:text", NS) if "est" in t.get("class", "")][0]


def test_estimator_labels_as_declared_and_as_resolved():
    g = readme_graph()
    declared = parse(_draw.svg(g.name, _draw.describe(g.nodes)))  # not resolved, and not called "auto"
    assert est_label(declared, "x") == est_label(declared, "z") == "default"
    bare = parse(g._repr_svg_())  # what Jupyter shows for a plain `g`: resolved as the compiler will
    assert (est_label(bare, "x"), est_label(bare, "z")) == ("pathwise", "score")
    est = scg.compile(g)
    resolved = parse(render.to_svg(g, compiled=est, inputs={"theta": 0.3}))
    assert (est_label(resolved, "x"), est_label(resolved, "z")) == ("pathwise", "score")
    # Without inputs: resolved from the distributions (Normal reparameterisable, Bernoulli not), as the compiler does
    for svg in (render.to_svg(g), render.to_svg(g, compiled=est)):
        assert (est_label(parse(svg), "x"), est_label(parse(svg), "z")) == ("pathwise", "score")
    chain = parse(render.to_svg(chain_graph()))
    assert est_label(chain, "x1") == "score, b=x0"
    assert est_label(chain, "x2") == "score, b=LeaveOneOut"


def test_default_that_needs_inputs_is_labelled_default_never_auto():
    g = scg.Graph("params")
    params = g.input("params")  # a dict of arrays: scalar stand-ins cannot be indexed by name
    x = g.stochastic("x", lambda p: dist.Normal(p["loc"], 1.0), params)
    g.cost("f", lambda x: x**2, x)
    for svg in (render.to_svg(g), g._repr_svg_(), scg.compile(g)._repr_svg_()):
        assert est_label(parse(svg), "x") == "default"
        assert not [t.text for t in parse(svg).iterfind(".//svg:text", NS) if "auto" in t.text]
    resolved = parse(render.to_svg(g, compiled=scg.compile(g), inputs={"params": {"loc": 0.0}}))
    assert est_label(resolved, "x") == "pathwise"
    assert "x\\ndefault" in render.to_dot(g)


def test_caption_lists_score_terms():
    g = readme_graph()
    root = parse(render.to_svg(g, compiled=scg.compile(g), inputs={"theta": 0.3}))
    terms = [t.text for t in root.iterfind(".//svg:text", NS) if t.get("class") == "score-term"]
    assert terms == ["∇ log p(z | θ, x) × (f)"]  # DEPS_z = {θ, x}: x is pathwise (Schulman 2016, §5.3.1)


def test_score_terms_of_readme_graph():
    g = readme_graph()
    est = scg.compile(g)
    assert render.score_terms(est, {"theta": 0.3}) == {"z": ("f",)}
    assert render.score_terms(g, {"theta": 0.3}) == {"z": ("f",)}
    assert render.score_terms(est) == {}  # as declared, both are 'auto'


def test_score_terms_match_figure_11_chain():
    # Figure 11 (5): ∂log p(x1|θ,x0) (f1 + f2) + ∂log p(x2|θ,x1) f2.
    assert render.score_terms(chain_graph()) == {"x1": ("f1", "f2"), "x2": ("f2",)}


@pytest.mark.parametrize("make", [readme_graph, chain_graph])
def test_dot_lists_every_node_and_edge(make):
    g = make()
    dot = render.to_dot(g)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for n in g.nodes:
        assert f'"{n.name}" [label=' in dot
        for p in n.parents:
            assert f'"{p}" -> "{n.name}";' in dot
    extra = sum(isinstance(n.baseline, str) and n.baseline not in n.parents for n in g.nodes)  # dashed baseline edges
    assert dot.count(" -> ") == sum(len(set(n.parents)) for n in g.nodes) + extra
    assert "peripheries=2" in dot  # costs get a double border


def test_layout_goes_left_to_right_without_overlaps():
    for g in (readme_graph(), chain_graph()):
        pos = render.layout(g)
        for n in g.nodes:
            assert all(pos[p][0] < pos[n.name][0] for p in n.parents)
        for u, v in itertools.combinations(pos, 2):
            assert pos[u] != pos[v]


def test_unfinished_graph_still_renders():
    g = scg.Graph("wip")
    g.input("theta")
    g.stochastic("w", lambda a, b: dist.Normal(a, b), "theta", "later")  # forward reference, no cost yet
    groups = node_groups(parse(render.to_svg(g)))
    assert "missing" in groups["later"].get("class")
    assert "later" in render.to_dot(g)


def test_baseline_node_is_drawn_as_a_dashed_link():
    g = scg.Graph()
    theta = g.input("theta")
    b = g.deterministic("b", lambda t: t**2, theta)
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta, estimator="score", baseline=b)
    g.cost("f", lambda x: x**2, x)
    root = parse(render.to_svg(g))
    links = [(p.get("data-src"), p.get("data-dst"), p.get("marker-end")) for p in root.iterfind(".//svg:path", NS)
             if p.get("class") == "baseline-edge"]
    assert links == [("b", "x", None)]
    assert '"b" -> "x" [style=dashed' in render.to_dot(g)
    terms = [t.text for t in root.iterfind(".//svg:text", NS) if t.get("class") == "score-term"]
    assert terms == ["∇ log p(x | θ) × (f − b)"]  # Theorem 2: Q̂_x − b_x


def walk(horizon=5, discount=0.9):
    """The random walk of scg.Temporal's docstring: s_next = s ± 1 carried into s, θ shared by every step."""
    step = scg.Graph("walk")
    theta, s = step.input("theta"), step.input("s")
    a = step.stochastic("a", lambda th: dist.Bernoulli(logits=th), theta)
    s1 = step.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
    step.cost("c", lambda s1: s1**2, s1)
    return scg.Temporal(step, carry={"s": "s_next"}, horizon=horizon, discount=discount)


def test_temporal_is_its_step_in_a_frame_with_horizon_discount_and_carry_edges():
    t = walk()
    for svg in (render.to_svg(t), render.to_svg(t.step, compiled=scg.compile(t)), t._repr_svg_()):
        root = parse(svg)
        (frame,) = [r for r in root.iterfind(".//svg:rect", NS) if r.get("class") == "frame"]
        texts = {t.get("class"): t.text for t in root.iterfind(".//svg:text", NS)}
        assert texts["frame-title"] == "T = 5 steps, γ = 0.9"
        assert texts["carry-label"] == "s_next → s"
        carry = [(p.get("data-src"), p.get("data-dst"), p.get("marker-end")) for p in root.iterfind(".//svg:path", NS)
                 if p.get("class") == "carry-edge"]
        assert carry == [("s_next", "s", "url(#carry-arrow)")]
        x0, x1 = float(frame.get("x")), float(frame.get("x")) + float(frame.get("width"))
        xs = {v: float(grp.find("svg:text", NS).get("x")) for v, grp in node_groups(root).items()}
        assert xs["theta"] < x0 < min(xs[v] for v in ("s", "a", "s_next", "c")) <= max(xs.values()) < x1
        assert est_label(root, "a") == "score"
    dot = render.to_dot(t)
    assert 'label="T = 5 steps, γ = 0.9"' in dot and '"s_next" -> "s" [color="#1f5fa8", label="t+1"' in dot
    assert dot.index('"theta" [') < dot.index("subgraph cluster_step") < dot.index('"s" [')
    assert render.score_terms(t, {"theta": 0.0, "s": 0.0}) == {"a": ("c",)}


def scene(graph):
    return _draw.scene(*render._picture(graph, None, None))


def label_boxes(sc):
    """``(text, node, centre, half)`` of every estimator label: 0.55 em a character, as wide as it is drawn."""
    return [(t.text, t.node, (t.x, t.y - 0.35 * t.size), (0.275 * t.size * len(t.text), 0.35 * t.size))
            for t in sc.texts if t.cls.startswith("est")]


GRAPHS = {"readme": readme_graph, "chain": chain_graph, "walk": walk,
          **{f"random{i}": (lambda i=i: random_graphs.random_graph(i).graph) for i in range(8)}}


@pytest.mark.parametrize("name", GRAPHS)
def test_edges_cross_no_label_and_arrowheads_follow_the_curves(name):
    sc = scene(GRAPHS[name]())
    centres = {s.node: (s.cx, s.cy) for s in sc.shapes if s.cls == "shape"}
    centres.update({t.node: (t.x, t.y - 5) for t in sc.texts if t.cls == "label" and t.node not in centres})
    boxes = label_boxes(sc) + [(s.node, s.node, (s.cx, s.cy), (s.hw - 1, s.hh - 1)) for s in sc.shapes
                               if s.cls == "shape"]
    for e in sc.edges:
        pts = _draw._sample(e.path)
        for text, node, (cx, cy), (hw, hh) in boxes:
            if text == node and node in (e.src, e.dst):
                continue  # an edge ends at its nodes' shapes
            inside = (np.abs(pts[:, 0] - cx) < hw) & (np.abs(pts[:, 1] - cy) < hh)
            assert not inside.any(), f"{e.cls} {e.src} -> {e.dst} crosses {text!r} of {node}"
        if e.arrow:  # the last tangent (from the last control point) points at the destination's centre
            *_, before, end = [np.array(c[i:i + 2]) for c in e.path for i in range(1, len(c), 2)]
            tangent, to_centre = end - before, np.array(centres[e.dst]) - end
            cos = tangent @ to_centre / np.linalg.norm(tangent) / np.linalg.norm(to_centre)
            assert cos > 0.999, (e.src, e.dst, cos)
    notes = label_boxes(sc)
    for (a, _, (ax, ay), (aw, ah)), (b, _, (bx, by), (bw, bh)) in itertools.combinations(notes, 2):
        assert not (abs(ax - bx) < aw + bw and abs(ay - by) < ah + bh), f"labels {a!r} and {b!r} overlap"


@pytest.mark.parametrize("make", [readme_graph, walk])
def test_png_of_a_graph_and_of_a_temporal(make, tmp_path):
    g = make()
    texts = [t.get_text() for t in render.to_figure(g).axes[0].texts]
    assert {"θ", "f" if make is readme_graph else "c"} <= set(texts)
    if make is readme_graph:
        assert {"pathwise", "score", "∇ log p(z | θ, x) × (f)"} <= set(texts)
    else:
        assert {"score", "T = 5 steps, γ = 0.9", "s_next → s"} <= set(texts)
    out = render.save(g, tmp_path / f"{g.name}.png", dpi=80)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
