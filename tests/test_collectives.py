"""Collective costs: NCCL's bus-bandwidth factors, ring / tree / hierarchical times computed by
hand, symbolic degrees equal to numbers, and the interconnect figures of the target files."""

import pytest
import sympy

from irtools.cli import main
from irtools.hardware import INTERCONNECT, TargetError, list_targets, load_target, save_target
from passes import collectives as c

GB = 1e9
H100 = c.Topology.of("h100-sxm")


def test_bus_factors_are_nccls():
    """nccl-tests PERFORMANCE.md: busbw = algbw · factor."""
    n = 8
    assert c.bus_factor("all_reduce", n) == sympy.Rational(2 * (n - 1), n)
    for kind in ("all_gather", "reduce_scatter", "all_to_all"):
        assert c.bus_factor(kind, n) == sympy.Rational(n - 1, n)
    assert c.bus_factor("send_recv", n) == 1 and c.bus_factor("broadcast", n) == 1
    with pytest.raises(ValueError):
        c.bus_factor("gossip", n)


@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all"])
def test_a_ring_runs_at_the_link_bus_bandwidth(kind):
    link = c.Link("nvlink", 450 * GB, 0.0)
    size, n = 2 * GB, 8
    t = c.ring_time(kind, size, n, link)
    assert float(c.busbw(kind, size, n, t)) == pytest.approx(450 * GB)
    assert float(c.algbw(size, t)) == pytest.approx(450 * GB / float(c.bus_factor(kind, n)))


def test_times_by_hand_on_h100():
    size = 1 * GB
    # 8 ranks in one node, ring: 2·7/8·S over NVLink + 14 hops
    inside = c.collective_time("all_reduce", size, 8, H100, algorithm="ring")
    assert float(inside) == pytest.approx(2 * 7 / 8 * size / (450 * GB) + 14 * 1e-6)
    # 16 ranks over two nodes: reduce-scatter + all-gather in each node, all-reduce of S/8 between them
    two = c.collective_time("all_reduce", size, 16, H100, algorithm="ring")
    hand = 2 * (7 / 8 * size / (450 * GB) + 7e-6) + (2 * (1 / 2) * size / 8 / (50 * GB) + 2 * 5e-6)
    assert float(two) == pytest.approx(hand)
    # a data-parallel group of 4 ranks 8 apart (tp = 8): one rank per node, all over InfiniBand
    dp = c.collective_time("all_reduce", size, 4, H100, stride=8, algorithm="ring")
    assert float(dp) == pytest.approx(2 * 3 / 4 * size / (50 * GB) + 6 * 5e-6)
    # pipeline transfer: inside a node (stride 4) over NVLink, across nodes (stride 8) over InfiniBand
    assert float(c.collective_time("send_recv", size, 2, H100, stride=4)) == pytest.approx(size / (450 * GB) + 1e-6)
    assert float(c.collective_time("send_recv", size, 2, H100, stride=8)) == pytest.approx(size / (50 * GB) + 5e-6)
    assert c.collective_time("all_reduce", size, 1, H100) == 0


def test_tree_and_auto():
    link = H100.intra
    small, n = 1024, 8
    ring = c.collective_time("all_reduce", small, n, H100, algorithm="ring")
    tree = c.collective_time("all_reduce", small, n, H100, algorithm="tree")
    assert float(tree) == pytest.approx(2 * small / link.bandwidth + 2 * 3 * link.latency)
    assert float(tree) < float(ring)  # latency-bound: log2(8) hops beat 2·7
    auto = c.collective_time("all_reduce", small, n, H100, algorithm="auto")
    assert float(auto) == pytest.approx(min(float(ring), float(tree)))
    big = 4 * GB
    assert float(c.collective_time("all_reduce", big, n, H100)) == pytest.approx(
        float(c.collective_time("all_reduce", big, n, H100, algorithm="ring")))


@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"])
def test_symbolic_degrees_equal_numbers(kind):
    n, stride, s = sympy.symbols("n stride s", positive=True, integer=True)
    expr = c.collective_time(kind, s, n, H100, stride)
    fn = sympy.lambdify((s, n, stride), expr, "numpy")
    for nv, sv in ((1, 1), (2, 1), (8, 1), (16, 1), (4, 8), (8, 2), (64, 4)):
        want = float(c.collective_time(kind, 3 * GB, nv, H100, sv))
        assert float(expr.subs({s: 3 * GB, n: nv, stride: sv})) == pytest.approx(want)
        assert float(fn(3 * GB, nv, sv)) == pytest.approx(want)


def test_every_target_has_sourced_interconnect_figures():
    for name in list_targets(include_user=False):
        t = load_target(name)
        assert t.gpus_per_node and t.intranode_bandwidth and t.internode_bandwidth, name
        for key in ("gpus_per_node", "intranode_bandwidth", "internode_bandwidth", "intranode_latency", "internode_latency"):
            assert t.sources.get(key), (name, key)
    h100, a100 = load_target("h100-sxm"), load_target("a100-sxm-80gb")
    assert h100.intranode_bandwidth == 450e9 and "900 GB/s" in h100.sources["intranode_bandwidth"]
    assert a100.intranode_bandwidth == 300e9 and "600 GB/s" in a100.sources["intranode_bandwidth"]
    assert h100.internode_bandwidth == 50e9 and "400 Gb/s" in h100.sources["internode_bandwidth"]


def test_target_round_trip_and_missing_figures(tmp_path):
    t = load_target("h100-sxm")
    path = save_target(t, tmp_path / "copy.toml")
    back = load_target(path)
    assert all(getattr(back, k) == getattr(t, k) for k in INTERCONNECT)
    bare = tmp_path / "bare.toml"
    bare.write_text(path.read_text().replace("internode_bandwidth", "# internode_bandwidth"))
    with pytest.raises(TargetError, match="interconnect"):
        c.Topology.of(str(bare))


def test_targets_command_shows_interconnect(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    line = out.splitlines()[out.splitlines().index(next(x for x in out.splitlines() if x.startswith("h100-sxm"))) + 1]
    assert "8 per node" in line and "NVLink 450 GB/s" in line and "InfiniBand 50.0 GB/s" in line
