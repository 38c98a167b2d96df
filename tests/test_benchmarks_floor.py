"""The FLOP-floor benchmark's figures and table (issue 17, item 4): benchmarks/floor.py turns
measurements into the floor, the ratios, the peer's median and the README table, and times our
runs and the peer's in turn. Every measurement here is fabricated: no timing is asserted."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


if str(ROOT / "benchmarks") not in sys.path:  # the scripts import each other from there
    sys.path.insert(0, str(ROOT / "benchmarks"))
floor = importlib.import_module("floor")
speed_avalanche = floor.speed_avalanche()

MACHINE = {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2.0", "python": "3.11",
           "device": "cpu"}


def _counts() -> Any:
    # one phase of 10 steps, 2 probed: 2 + 3 GFLOP, then 8 x 3 GFLOP (the steady step) = 29 GFLOP;
    # 1 GFLOP outside the steps: training 30 GFLOP; two evaluations of 5 GFLOP: 10 GFLOP
    phase = floor.PhaseCount(task=0, name="train", steps=10, flops=[2 * 10**9, 3 * 10**9])
    return floor.Counts([phase], [5 * 10**9, 5 * 10**9], 10**9, None, 128, [])


def _runs(whole: list[float], train: list[float]) -> list[dict[str, float]]:
    return [{"whole_seconds": w, "total_seconds": w - 1, "train_seconds": t,
             "eval_seconds": 1.5, "final_accuracy": 0.9} for w, t in zip(whole, train, strict=True)]


def _summary(name: str, peer: dict[str, Any] | None, conv: bool = False) -> dict[str, Any]:
    # a peak of 10 GFLOP/s: floor 40 / 10 = 4 s, training floor 3 s, evaluation floor 1 s
    # one training batch at 4 GFLOP/s: the 30 GFLOP of training take 7.5 s at that rate
    layers: dict[str, Any] = {"model": {"flops": 10**9, "seconds": 0.25}, "layers": []}
    if conv:  # 2 GFLOP in 0.5 s = 4 GFLOP/s = 40 % of the peak
        layers["conv"] = {"flops": 2 * 10**9, "seconds": 0.5}
    case = floor.Case("permuted-mnist", "lwf-avalanche", ("train.epochs=1",), "a test case")
    return floor.summary(name, case, ["train.epochs=1"], machine=MACHINE, peak=10.0,
                         counts=_counts(), layers=layers,
                         runs=_runs([9.0, 8.0, 12.0], [6.0, 5.5, 7.0]), peer=peer,
                         smoke=False, probe_steps=2)


PEER = {"case": "permuted", "name": "Avalanche 0.6.0 LwF",
        "command": "python benchmarks/speed_avalanche.py --case permuted",
        "runs": [{"whole_seconds": 30.0, "final_accuracy": 0.93},
                 {"whole_seconds": 27.0, "final_accuracy": 0.93},
                 {"whole_seconds": 45.0, "final_accuracy": 0.93}]}
NO_PEER = {"name": None, "reason": "speed_avalanche.py has no Avalanche side of this "
                                   "configuration"}


def test_summary_floor_medians_and_ratios() -> None:
    r = _summary("permuted", PEER, conv=True)
    assert r["flops"]["training"] == 30 * 10**9 and r["flops"]["run"] == 40 * 10**9
    assert r["floor"] == pytest.approx({"seconds": 4.0, "train_seconds": 3.0,
                                        "eval_seconds": 1.0})
    assert r["measured"]["whole_seconds"] == 9.0 and r["measured"]["train_seconds"] == 6.0
    assert r["ratios"]["whole_over_floor"] == pytest.approx(9 / 4)
    assert r["ratios"]["train_over_train_floor"] == pytest.approx(6 / 3)
    assert r["ratios"]["eval_over_eval_floor"] == pytest.approx(1.5 / 1)
    # the peer's median of 30, 27, 45 is 30; peer / ours = 30 / 9
    assert r["peer"]["seconds"] == 30.0 and r["peer"]["final_accuracy"] == 0.93
    assert r["ratios"]["peer_over_ours"] == pytest.approx(30 / 9)
    assert r["conv_of_peak"] == pytest.approx(0.4)
    # training 6 s against its 30 GFLOP at one batch's 4 GFLOP/s (7.5 s), whatever the peak
    assert r["ratios"]["train_over_batch_rate"] == pytest.approx(6 / 7.5)
    assert floor.with_peak(r, 20.0)["ratios"]["train_over_batch_rate"] == pytest.approx(0.8)
    assert "seconds" not in PEER  # the caller's record is not changed


def test_summary_without_a_peer() -> None:
    for peer in (None, NO_PEER):
        r = _summary("derpp", peer)
        assert r["ratios"]["peer_over_ours"] is None and r["conv_of_peak"] is None
        assert r["peer"] == peer


def test_targets_say_met_missed_and_not_measured() -> None:
    # permuted: whole / floor 2.25 > 1.5, training / training floor 2.00 > 1.3, peer 3.33 < 5
    assert floor.targets(_summary("permuted", PEER)) == [
        "whole / floor 2.25 x <= 1.5: MISSED", "training / training floor 2.00 x <= 1.3: MISSED",
        "peer / ours 3.33 x >= 5: MISSED"]
    assert floor.targets(_summary("cifar", PEER)) == ["peer / ours 3.33 x >= 3: met"]
    assert floor.targets(_summary("cifar", NO_PEER)) == ["peer / ours not measured"]
    assert floor.targets(_summary("derpp", NO_PEER)) == []


def test_markdown_table_one_row_per_case() -> None:
    results = [_summary("permuted", PEER), _summary("derpp", NO_PEER),
               _summary("cifar", {**PEER, "case": "cifar", "note": "the --set items are not "
                                  "passed to the peer"}, conv=True)]
    text = floor.markdown(results, "python benchmarks/floor.py --case all --peer", "abc1234",
                          "2026-12-02")
    lines = text.splitlines()
    assert lines[0].startswith("`python benchmarks/floor.py --case all --peer` "
                               "(commit `abc1234`, 2026-12-02)")
    assert lines[2] == ("| case | machine | peak GFLOP/s | floor s (training) | ours whole s | "
                        "ours training s | whole / floor | training / training floor | "
                        "training / at one batch's rate | peer s | peer / ours | "
                        "convolutions, % of peak |")
    assert lines[3] == "|" + "---|" * 12
    machine = "Test CPU, 2 cores, torch 2.0 (2 threads, cpu)"
    assert lines[4] == (f"| `permuted`: a test case | {machine} | 10 | 4.00 (3.00) | "
                        "9.00 (9.0, 8.0, 12.0) | 6.00 | **2.25×** | **2.00×** | 0.80× | "
                        "Avalanche 0.6.0 LwF: 30.00 (30.0, 27.0, 45.0) | **3.33×** | – (none) |")
    assert lines[5] == (f"| `derpp`: a test case | {machine} | 10 | 4.00 (3.00) | "
                        "9.00 (9.0, 8.0, 12.0) | 6.00 | **2.25×** | **2.00×** | 0.80× | "
                        "no peer timed | – | – (none) |")
    assert lines[6].endswith("| **3.33×** | 40 % |")
    assert lines[7] == ""
    assert lines[8] == ("- `permuted`: `lifelong-kd run permuted-mnist --strategy lwf-avalanche "
                        "--set train.epochs=1`; final average accuracy: ours 90.00 %, peer "
                        "93.00 %; targets (issue 17): whole / floor 2.25 x <= 1.5: MISSED; "
                        "training / training floor 2.00 x <= 1.3: MISSED; peer / ours 3.33 x >= "
                        "5: MISSED.")
    assert "; no peer timed: speed_avalanche.py has no Avalanche side" in lines[9]
    assert "the --set items are not passed to the peer" in lines[10]
    assert "SMOKE" not in text


def test_markdown_flags_few_repeats_smoke_and_no_peer_asked() -> None:
    one = {**PEER, "runs": PEER["runs"][:1]}
    r = _summary("cifar", one) | {"smoke": True}
    text = floor.markdown([r, _summary("derpp", None)], "python benchmarks/floor.py --smoke",
                          "abc1234 + uncommitted changes", "2026-12-02")
    assert "Avalanche 0.6.0 LwF: 30.00 |" in text  # one run: no brackets
    assert "1 repeat(s): issue 17 asks for the median of at least 3" in text
    assert "not timed (no --peer)" in text
    assert text.endswith("SMOKE: tiny cases, a check of the script, not a measurement.\n")


def test_report_prints_the_peer(capsys: pytest.CaptureFixture[str]) -> None:
    floor.report(_summary("permuted", PEER))
    floor.report(_summary("derpp", NO_PEER))
    out = capsys.readouterr().out
    assert ("peer: Avalanche 0.6.0 LwF (`python benchmarks/speed_avalanche.py --case permuted`'s "
            "Avalanche side, interleaved with ours), median of 3: whole process 30.00 s (runs: "
            "30.00, 27.00, 45.00 s); peer / ours 3.33 x; final average accuracy: ours 90.00 %, "
            "peer 93.00 %") in out
    assert "peer: no peer timed (speed_avalanche.py has no Avalanche side" in out
    assert "targets (issue 17): whole / floor 2.25 x <= 1.5: MISSED" in out
    assert "training / its FLOPs at one training batch's fwd+bwd rate (below): 0.80 x" in out


def test_interleave_alternates_ours_and_the_peer() -> None:
    order: list[str] = []

    def side(name: str) -> Any:
        def run() -> dict[str, float]:
            order.append(name)
            return {"whole_seconds": float(len(order))}
        return run

    runs, peer_runs = floor.interleave(side("ours"), side("peer"), 3)
    assert order == ["ours", "peer"] * 3
    assert [r["whole_seconds"] for r in runs] == [1.0, 3.0, 5.0]
    assert [r["whole_seconds"] for r in peer_runs] == [2.0, 4.0, 6.0]
    order.clear()
    runs, peer_runs = floor.interleave(side("ours"), None, 2)
    assert order == ["ours", "ours"] and peer_runs == []


def test_arguments_accept_peer_and_markdown(tmp_path: Path) -> None:
    args = floor.parser().parse_args(["--case", "permuted,cifar", "--repeats", "3", "--peer",
                                      "--markdown", str(tmp_path / "t.md"), "--json", "f.json"])
    assert args.peer and args.markdown == tmp_path / "t.md" and args.repeats == 3
    assert args.case == "permuted,cifar" and args.json == Path("f.json")
    plain = floor.parser().parse_args([])
    assert not plain.peer and plain.markdown is None and plain.repeats == 3


def test_peers_are_speed_avalanche_cases_on_the_same_settings() -> None:
    # a peer runs speed_avalanche.py's case of the same name; the case takes its settings from it
    cases = floor.named_cases()
    assert set(floor.PEERS) == {"permuted", "cifar"} and "derpp" not in floor.PEERS
    for name, peer in floor.PEERS.items():
        benchmark, strategy, settings = speed_avalanche.OURS[peer]
        assert (cases[name].benchmark, cases[name].strategy) == (benchmark, strategy)
        assert cases[name].settings == tuple(settings)
        assert speed_avalanche.KIND[peer] == "lwf"
    assert floor.peer_name("permuted").endswith(" LwF")
    assert floor.peer_name("cifar").startswith("Avalanche")


def test_final_accuracy_is_the_mean_of_the_last_row(tmp_path: Path) -> None:
    (tmp_path / "accuracy_matrix.csv").write_text(
        "after_task,task_0,task_1\n0,0.900000,0.100000\n1,0.800000,0.950000\n")
    assert speed_avalanche.final_accuracy(tmp_path) == pytest.approx((0.8 + 0.95) / 2)


def test_with_peak_rescales_the_floor_and_its_ratios() -> None:
    r = {"peak_gflops": 25.0, "floor": {"seconds": 8.0, "train_seconds": 6.0, "eval_seconds": 2.0},
         "ratios": {"whole_over_floor": 3.0, "train_over_train_floor": 2.0,
                    "eval_over_eval_floor": None, "peer_over_ours": 4.0},
         "conv_of_peak": 0.9, "measured": {"whole_seconds": 24.0}}
    s = floor.with_peak(r, 50.0)  # twice the peak: half the floor, twice its ratios
    assert s["peak_gflops"] == 50.0
    assert s["floor"] == {"seconds": 4.0, "train_seconds": 3.0, "eval_seconds": 1.0}
    assert s["ratios"] == {"whole_over_floor": 6.0, "train_over_train_floor": 4.0,
                           "eval_over_eval_floor": None, "peer_over_ours": 4.0}
    assert s["conv_of_peak"] == pytest.approx(0.45)
    assert s["measured"] == r["measured"] and r["peak_gflops"] == 25.0  # r is not changed
