"""The online tasks of ``meshprop.data.tasks`` (generators, metrics, baselines against hand
computations), ``OnlineLearner.last_output`` and ``meshprop online``'s refusals: a bad CSV
cell with its row, an option that does not apply to the task, and nothing written into --out
when it refuses."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import meshprop as mp
from meshprop.cli import main
from meshprop.commands.options import settings_flag
from meshprop.data.tasks import (
    adding_problem,
    chance_accuracy,
    copy_task,
    delayed_recall,
    load_series_column,
    mackey_glass_task,
    majority_accuracy,
    mean_mse,
    persistence_nmse,
    ridge_ar_nmse,
    score,
    series_task,
)
from meshprop.runs.online import run_online
from meshprop.runs.online_config import OnlineConfig
from meshprop.runs.online_networks import CHAIN_FEATURES, build_net, line_length
from meshprop.runs.online_tasks import (
    DEFAULT_INIT_SCALE,
    default_train_ticks,
    linear_start_,
)
from meshprop.runs.settings import ConfigError


def test_delayed_recall_targets_are_the_bits_d_elements_earlier() -> None:
    task = delayed_recall(delay=3, train_ticks=40, test_ticks=20, seed=1)
    assert task.x_train.shape == (40, 1, 1) and task.x_test.shape == (20, 1, 1)
    bits = task.x_train[:, 0, 0]
    assert set(bits.tolist()) <= {-1.0, 1.0}
    assert torch.equal(task.y_train[3:, 0, 0], bits[:-3])
    assert task.m_train[:, 0].tolist() == [False] * 3 + [True] * 37
    assert task.metric == "accuracy" and task.metric_key == "test_accuracy"
    assert task.warmup == 3 and task.baselines["chance"] == 0.5
    # the same draw as a plain generator: the bits of seed 1, training stream first
    gen = torch.Generator().manual_seed(1)
    assert torch.equal(bits, torch.randint(0, 2, (40,), generator=gen).double() * 2 - 1)


def test_copy_task_episodes() -> None:
    task = copy_task(length=2, delay=3, train_ticks=21, test_ticks=7, seed=0)
    x, y, m = task.x_train[:, 0], task.y_train[:, 0, 0], task.m_train[:, 0]
    assert task.x_train.shape == (21, 1, 2) and task.n_inputs == 2
    for start in (0, 7, 14):  # episodes of 2 + 3 + 2 elements
        pattern = x[start : start + 2, 0]
        assert set(pattern.tolist()) <= {-1.0, 1.0}
        assert x[start + 2 : start + 7, 0].abs().sum() == 0  # blanks and recall: no bit
        assert x[start + 5 : start + 7, 1].tolist() == [1.0, 1.0]  # the recall cue
        assert x[start : start + 5, 1].abs().sum() == 0
        assert torch.equal(y[start + 5 : start + 7], pattern)
        assert m[start : start + 7].tolist() == [False] * 5 + [True] * 2
    assert task.metric == "accuracy"


def test_adding_problem_target_is_the_sum_of_the_marked_values() -> None:
    task = adding_problem(length=6, train_ticks=30, test_ticks=12, seed=2)
    x, y, m = task.x_train[:, 0], task.y_train[:, 0, 0], task.m_train[:, 0]
    assert task.x_train.shape == (30, 1, 2) and task.metric == "mse"
    for start in range(0, 30, 6):
        values, marker = x[start : start + 6, 0], x[start : start + 6, 1]
        assert marker[:3].sum() == 1 and marker[3:].sum() == 1
        assert ((values >= 0) & (values <= 1)).all()
        assert y[start + 5] == pytest.approx(float((values * marker).sum()))
        assert m[start : start + 6].tolist() == [False] * 5 + [True]
    train, test = y[m].numpy(), task.y_test[:, 0, 0][task.m_test[:, 0]].numpy()
    assert task.baselines["mean"] == pytest.approx(np.mean((test - train.mean()) ** 2))


def test_series_task_windows_split_and_cycle() -> None:
    series = np.arange(30, dtype=np.float64) ** 1.5
    task = series_task(series, "s", horizon=2, window=3, test_fraction=0.3, train_ticks=50)
    n_train = 21
    z = (series - series[:n_train].mean()) / series[:n_train].std()
    assert task.x_train.shape == (50, 1, 3) and task.x_test.shape == (28, 1, 3)
    # element t: [z(t), z(t−1), z(t−2)] (0 before the start), target z(t+2)
    assert task.x_test[4, 0].tolist() == pytest.approx([z[4], z[3], z[2]])
    assert task.x_test[0, 0].tolist() == pytest.approx([z[0], 0.0, 0.0])
    assert task.y_test[:, 0, 0].numpy() == pytest.approx(z[2:])
    # training: the full windows, t = W − 1 = 2 … n_train − H − 1 = 18 (17 elements), cycled
    assert task.x_train[0, 0].tolist() == pytest.approx(task.x_test[2, 0].tolist())
    assert task.x_train[17, 0].tolist() == pytest.approx(task.x_test[2, 0].tolist())
    assert task.y_train[16, 0, 0] == pytest.approx(z[20])
    assert bool((task.x_train != 0).all())  # no zero-padded window is trained on
    assert task.m_test[:, 0].nonzero().flatten().tolist() == list(range(19, 28))
    # the AR(5) baseline, and the AR(3) of the network's own inputs
    assert set(task.baselines) == {"persistence", "ridge_ar5", "ridge_ar3"}
    assert task.metric == "nmse"


def test_mackey_glass_task_shapes_and_horizon() -> None:
    task = mackey_glass_task(horizon=4, window=2, train_ticks=10, n_samples=200)
    assert task.x_test.shape == (196, 1, 2) and task.y_train.shape == (10, 1, 1)
    assert torch.equal(task.y_test[:-4, 0, 0], task.x_test[4:, 0, 0])
    assert int(task.m_test.sum()) == 60  # targets in the last 30 %
    assert 0 < task.baselines["ridge_ar5"] < task.baselines["persistence"]


def test_score_against_hand_computations() -> None:
    target = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1)
    y = torch.tensor([0.3, 0.2, -0.1, -5.0]).view(4, 1, 1)
    mask = torch.tensor([True, True, True, False]).view(4, 1)
    assert score("accuracy", y, target, mask) == pytest.approx(1 / 3)
    mse = (0.7**2 + 1.2**2 + 1.1**2) / 3
    assert score("mse", y, target, mask) == pytest.approx(mse)
    assert score("nmse", y, target, mask) == pytest.approx(mse / np.var([1.0, -1.0, 1.0]))


def test_baselines_against_hand_computations() -> None:
    assert chance_accuracy(2) == 0.5 and chance_accuracy(4) == 0.25
    assert majority_accuracy(np.array([1, 1, -1]), np.array([1, -1, -1, -1])) == 0.25
    assert majority_accuracy(np.array([1, -1]), np.array([1, 1, -1])) == pytest.approx(2 / 3)
    assert mean_mse(np.array([0.0, 2.0]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    z = np.array([0.0, 1.0, 3.0, 2.0, 5.0])
    # x̂(t+1) = x(t) at t = 2, 3: errors (2 − 3)², (5 − 2)²; targets 2, 5 (variance 2.25)
    assert persistence_nmse(z, 1, np.array([2, 3])) == pytest.approx((1 + 9) / 2 / 2.25)
    rng = np.random.default_rng(0)
    series = np.sin(np.arange(200) * 0.3) + 0.1 * rng.standard_normal(200)
    times = np.arange(150, 198)
    # AR(5) by least squares with an intercept, fitted on t = 4 … 147 (targets below 150)
    fit = np.arange(4, 148)
    X = np.stack([series[fit - k] for k in range(5)] + [np.ones(len(fit))], axis=1)
    coef = np.linalg.lstsq(X, series[fit + 2], rcond=None)[0]
    Xt = np.stack([series[times - k] for k in range(5)] + [np.ones(len(times))], axis=1)
    expected = np.mean((Xt @ coef - series[times + 2]) ** 2) / np.var(series[times + 2])
    assert ridge_ar_nmse(series, 2, 150, times) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1\n2\n\n4\n", "row 3 (line 4), column 'v': blank cell"),
        ("1\n2\nnan\n4\n", "row 3 (line 4), column 'v': 'nan' is not a finite number"),
        ("1\n2\n3\nabc\n", "row 4 (line 5), column 'v': 'abc' is not a number"),
        ("1\ninf\n", "row 2 (line 3), column 'v': 'inf' is not a finite number"),
    ],
)
def test_a_bad_cell_is_refused_with_its_row(tmp_path, body, message) -> None:
    path = tmp_path / "s.csv"
    path.write_text("v\n" + body)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_series_column(path, "v")


def test_a_blank_cell_among_columns_and_trailing_blank_lines(tmp_path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("t,v\n0,1\n1,\n2,3\n")
    with pytest.raises(ValueError, match=r"row 2 \(line 3\), column 'v': blank cell"):
        load_series_column(path, "v")
    path.write_text("t,v\n0,1\n1,2\n\n\n")
    assert load_series_column(path, "v").tolist() == [1.0, 2.0]


@pytest.fixture
def sine_csv(tmp_path):
    path = tmp_path / "sine.csv"
    values = np.sin(np.arange(60) * 0.4)
    path.write_text("t,value\n" + "".join(f"{k},{v:.5f}\n" for k, v in enumerate(values)))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "mackey-glass", "--delay", "10"],
         "--delay does not apply to --task mackey-glass (only to delayed-recall, copy)"),
        (["--task", "delayed-recall", "--horizon", "2"], "--horizon does not apply to --task"),
        (["--task", "adding", "--delay", "3"], "--delay does not apply to --task adding"),
        (["--task", "copy", "--window", "3"], "--window does not apply to --task copy"),
        (["--task", "mackey-glass", "--test-ticks", "100"], "--test-ticks does not apply"),
        (["DATA", "--test-ticks", "100"], "--test-ticks does not apply to a --data series"),
        (["DATA", "--delay", "5"], "--delay does not apply to a --data series"),
        (["DATA", "--task", "copy"], "--task copy and --data: a CSV series is a task of its own"),
        (["DATA", "--horizon", "50"], "too few for horizon 50"),
        (["--task", "mackey-glass", "--test-fraction", "1.5"], "--test-fraction must be in"),
        (["BAD", "--horizon", "2"], "row 3 (line 4), column 'value': blank cell"),
        (["--method", "fop", "--order", "2"], "--order applies to --method snap only"),
        (["--method", "snap", "--order", "0"], "--order must be >= 1, got 0"),
    ],
)  # fmt: skip
def test_refusals_write_nothing(tmp_path, capsys, sine_csv, argv, message) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,value\n0,1\n1,2\n2,\n3,4\n")
    data = {"DATA": ["--data", str(sine_csv), "--column", "value"],
            "BAD": ["--data", str(bad), "--column", "value"]}  # fmt: skip
    argv = [a for arg in argv for a in data.get(arg, [arg])]
    out = tmp_path / "never"
    assert main(["online", *argv, "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_csv_run_records_its_own_settings_and_baselines(tmp_path, capsys, sine_csv) -> None:
    """Also: the data is checked before anything is written (a bad file is refused and leaves
    nothing behind; the same command once it is fixed runs), and ``--resume`` takes the run's
    settings, comparing an option of its task typed alone (the series' window) with them."""
    out = tmp_path / "run"
    argv = ["online", "--data", str(sine_csv), "--column", "value", "--train-ticks", "60",
            "--hidden", "3", "--log-every", "20", "--no-progress", "--out", str(out)]  # fmt: skip
    good = sine_csv.read_text()
    sine_csv.write_text("t,value\n0,1\n1,\n2,3\n")
    assert main(argv) == 2
    assert "blank cell" in capsys.readouterr().err and not out.exists()
    sine_csv.write_text(good)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "training part the first 42 (70 %), test part the last 18" in printed
    assert "cycled to 60 elements" in printed and "3 tanh hidden, 1 identity output" in printed
    assert "output started at the ridge fit of the window" in printed
    assert "test nmse " in printed and "baselines: persistence " in printed
    settings = json.loads((out / "config.json").read_text())
    assert settings["task"] == "series" and settings["delay"] is None
    assert settings["horizon"] == 1 and settings["window"] == 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "sine.csv:value" and metrics["metric"] == "nmse"
    assert set(metrics["baselines"]) == {"persistence", "ridge_ar5"}
    assert metrics["baselines"]["persistence"] > 0 and metrics["test_nmse"] >= 0
    assert (out / "learning_curve.png").stat().st_size > 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] and "online-state.pt" in manifest["files"]
    resume = ["online", "--out", str(out), "--resume", "--no-progress"]
    assert main([*resume, "--window", "5"]) == 0
    assert json.loads((out / "metrics.json").read_text())["test_nmse"] == metrics["test_nmse"]
    capsys.readouterr()
    assert main([*resume, "--window", "4"]) == 2
    assert "--window 4 (the run: 5)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("task", "key", "baselines"),
    [("copy", "test_accuracy", {"chance", "majority"}), ("adding", "test_mse", {"mean"})],
)
def test_copy_and_adding_run(task, key, baselines) -> None:
    args = OnlineConfig(task=task, hidden=3, train_ticks=60, test_ticks=40, log_every=20)
    result, net = run_online(args, progress=False)
    assert set(result.metrics["baselines"]) == baselines and key in result.metrics
    assert net.topology.n_inputs == 2
    assert len(result.test_trace["output"]) == int(result.test_trace and len(
        result.test_trace["element"]))  # fmt: skip


def test_task_defaults_are_resolved_per_task() -> None:
    def resolved(**typed):
        return OnlineConfig(**typed)

    recall = resolved()
    assert (recall.task, recall.delay, recall.lr) == ("delayed-recall", 10, 1e-3)
    # a delay line half as long again as the delay; a full mesh keeps 32 hidden neurons
    assert (recall.topology, recall.hidden, recall.start) == ("chain", 15, "random")
    assert resolved(delay=40).hidden == 60 and resolved(topology="full").hidden == 32
    assert recall.horizon is None and recall.window is None and recall.lr_decay == 1.0
    mg = resolved(task="mackey-glass")
    assert (mg.horizon, mg.window, mg.test_fraction, mg.delay) == (1, 5, 0.3, None)
    assert (mg.topology, mg.hidden, mg.start, mg.lr, mg.lr_decay) == (
        "full", 16, "linear", 1e-4, 1e-2)  # fmt: skip
    assert resolved(task="mackey-glass", topology="reservoir").start == "random"
    copy = resolved(task="copy", method="tbptt")
    assert copy.truncation == 10 and copy.hidden == line_length(3 + 5)
    adding = resolved(task="adding", length=20)
    assert (adding.hidden, adding.lr) == (30, 3e-3)
    assert default_train_ticks("delayed-recall", 40) == 20_000
    assert default_train_ticks("delayed-recall", 40, topology="full") == 300_000


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ({"start": "linear"}, "--start linear applies to prediction tasks only"),
        (
            {"task": "mackey-glass", "topology": "chain", "start": "linear"},
            "--start linear needs --topology full",
        ),
        ({"lr_decay": 0.0}, r"--lr-decay must be in \(0, 1\]"),
        ({"lr_decay": 1.5}, r"--lr-decay must be in \(0, 1\]"),
    ],
)
def test_start_and_lr_decay_refuse_what_does_not_fit(typed, message) -> None:
    with pytest.raises(ConfigError) as refused:
        OnlineConfig(**typed)
    # as the command says it: naming the flags
    assert re.search(message, refused.value.describe(lambda f: settings_flag(OnlineConfig, f)))


@pytest.mark.parametrize("method", ["fop", "tbptt"])
def test_last_output_is_the_prediction_of_the_element_just_consumed(method) -> None:
    topo = mp.Topology.random(2, 4, 2, density=1.0, seed=1)
    net = mp.MeshNet(topo, ticks=2, activation="tanh", dtype=torch.float64, seed=1)
    learner = mp.OnlineLearner(
        net, torch.optim.SGD(net.parameters(), lr=0.0), method=method,
        truncation=3 if method == "tbptt" else None,
    )  # fmt: skip
    x = torch.randn(5, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, _ = net.unroll(x)
    assert learner.last_output is None
    for t in range(5):
        loss = learner.step(x[t], torch.zeros(3, 2, dtype=torch.float64))
        assert isinstance(loss, float)
        assert torch.allclose(learner.last_output, y[t], atol=1e-12)
    learner.last_output.add_(1.0)  # a copy: the learner is not changed
    assert torch.allclose(learner.last_output, y[4], atol=1e-12)


def test_chain_topology_is_a_delay_line() -> None:
    topo = mp.Topology.chain(2, 3, 1)  # inputs 0, 1; bias 2; hidden 3, 4, 5; output 6
    assert sorted(topo.edge_list()) == sorted(
        [(0, 3), (1, 3), (3, 4), (4, 5), (3, 6), (4, 6), (5, 6),
         (2, 3), (2, 4), (2, 5), (2, 6)]
    )  # fmt: skip
    with pytest.raises(ValueError, match="length"):
        mp.Topology.chain(1, 0, 1)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_the_default_memory_network_starts_as_a_delay_line(layout) -> None:
    """The chain network (the memory tasks' default): with its links at gain 1, identity
    neurons and zero biases, chain neuron k holds at element t exactly what the first one held
    at t − k, whatever the random features and readout; nothing depends on the delay."""
    net = build_net(7, 0, torch.float64, DEFAULT_INIT_SCALE, inputs=1, topology="chain")
    if layout == "sparse":
        twin = mp.MeshNet(net.topology, ticks=1, activation=list(net.activation),
                          dtype=torch.float64, layout="sparse")  # fmt: skip
        with torch.no_grad():
            twin.parameter.copy_(net.edge_weights())
        net = twin
    task = delayed_recall(delay=5, train_ticks=10, test_ticks=40, seed=3)
    first = 2 + CHAIN_FEATURES  # inputs, bias, features; then the chain
    states, state = [], None
    with torch.no_grad():
        for t in range(40):
            _, state = net.unroll(task.x_test[t : t + 1], state=state)
            states.append(state[0, first - 2 : first - 2 + 7].clone())  # the free neurons
    for t in range(10, 40):
        for k in range(7):
            assert float(states[t][k]) == float(states[t - k][0])
    readout = net.dense_weights()[first : first + 7, -1]
    assert len(set(readout.tolist())) == 7  # random taps: the readout has to learn which


def test_memory_topologies_have_their_edges() -> None:
    ring = mp.Topology.ring(1, 3, 1)  # input 0, bias 1, hidden 2, 3, 4, output 5
    assert {(2, 3), (3, 4), (4, 2)} <= set(ring.edge_list())
    loops = mp.Topology.self_loops(2, 3, 1)  # inputs 0, 1; bias 2; hidden 3..5; output 6
    hidden_pairs = {(i, j) for i, j in loops.edge_list() if 3 <= i <= 5 and 3 <= j <= 5}
    assert hidden_pairs == {(3, 3), (4, 4), (5, 5)}
    res = mp.Topology.reservoir(1, 10, 1, degree=3, seed=4)
    inside = [(i, j) for i, j in res.edge_list() if 2 <= i < 12 and 2 <= j < 12]
    assert len(inside) == 30 and res == mp.Topology.reservoir(1, 10, 1, degree=3, seed=4)
    chain = mp.Topology.chain(2, 3, 1, features=2)  # hidden: features 3, 4; chain 5, 6, 7
    assert {(0, 3), (1, 4), (3, 5), (4, 5), (3, 8), (5, 6), (7, 8), (0, 5)} <= set(
        chain.edge_list()
    )
    assert chain.n_hidden == 5
    with pytest.raises(ValueError, match="degree"):
        mp.Topology.reservoir(1, 4, 1, degree=5)


def test_linear_start_is_the_ridge_fit() -> None:
    """--start linear: the network's output starts as the task's ridge fit, so its first
    prediction of every training element is the linear model's."""
    task = mackey_glass_task(horizon=1, window=5, train_ticks=50, n_samples=300)
    net = build_net(4, 0, torch.float64, DEFAULT_INIT_SCALE, inputs=5, output="identity")
    linear_start_(net, task)
    coef, intercept = task.linear_fit
    y, _ = net.unroll(task.x_train[:20])
    expected = task.x_train[:20, 0] @ torch.tensor(coef, dtype=torch.float64) + intercept
    assert torch.allclose(y[:, 0, 0], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["snap", "uoro"])
def test_the_approximate_methods_run_from_the_command_line(tmp_path, capsys, method) -> None:
    out = tmp_path / method
    argv = ["online", "--task", "delayed-recall", "--delay", "3", "--method", method,
            "--hidden", "4", "--train-ticks", "200", "--test-ticks", "50", "--log-every", "50",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert f"method {method}" in capsys.readouterr().out
    settings = json.loads((out / "config.json").read_text())
    assert settings["method"] == method
    assert settings["order"] == (1 if method == "snap" else None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["order"] == settings["order"]


def test_the_learning_rate_decays_to_lr_times_decay_and_resumes_on_the_curve() -> None:
    from meshprop.runs.online import advance, lr_schedule
    from meshprop.sequence import fast_adam

    args = OnlineConfig(task="mackey-glass")
    assert (args.lr, args.lr_decay) == (1e-4, 1e-2)
    net = build_net(2, 0, torch.float64, inputs=5, output="identity")
    optimizer = fast_adam(net.parameters(), args.lr)
    schedule = lr_schedule(optimizer, args, 100, 0)
    assert schedule is not None
    for _ in range(50):
        advance(schedule)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 1e-2**0.5, rel=1e-12)
    resumed = fast_adam(net.parameters(), args.lr)
    resumed.load_state_dict(optimizer.state_dict())
    lr_schedule(resumed, args, 100, 50)
    assert resumed.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    for _ in range(80):  # past the end: the rate stays at lr · decay
        advance(schedule)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6, rel=1e-12)
    args.lr_decay = 1.0
    assert lr_schedule(optimizer, args, 100, 0) is None


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_at_one_tick_per_element_the_output_is_affine_in_the_element(layout) -> None:
    """At one tick per element the output of element e reads the hidden states of element
    e − 1 and the inputs of e: with an identity output it is affine in x_e for a fixed past,
    whatever the hidden activations (the premise of the adding problem's one-tick floor);
    at two ticks per element the ReLU neurons reach the output and it is not."""
    topo = mp.Topology.random(2, 6, 1, density=1.0, bias=True, seed=1)
    past = torch.rand(7, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    last = [torch.tensor([[[a, b]]], dtype=torch.float64) for a, b in
            ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.3, 0.7), (-2.0, 5.0))]  # fmt: skip
    gaps = []
    for ticks in (1, 2):
        net = mp.MeshNet(topo, ticks=ticks, activation="relu", output_activation="identity",
                         dtype=torch.float64, layout=layout, seed=1)  # fmt: skip
        with torch.no_grad():
            y = [float(net.unroll(torch.cat([past, x]))[0][-1, 0, 0]) for x in last]
        slope_v, slope_m = y[1] - y[0], y[2] - y[0]
        checks = zip(((0.3, 0.7), (-2.0, 5.0)), y[3:], strict=True)
        gaps.append(max(abs(v - (y[0] + a * slope_v + b * slope_m)) for (a, b), v in checks))
    assert gaps[0] < 1e-12 and gaps[1] > 1e-3


def test_the_adding_problems_one_tick_floor() -> None:
    """The lowest test MSE of a predictor g(past) + a·x_e (what one tick per element allows):
    when the episode's second marker has come, g knows the answer and a = 0 is right; when it
    falls on the last element (chance π = 1/(L − ⌊L/2⌋)) the answer needs all of v_e, a = 1.
    One shared a: the best is a = π and the MSE π(1 − π)/12, measured here on the generator's
    episodes against the closed form."""
    for length in (10, 20):
        task = adding_problem(length=length, train_ticks=length, test_ticks=40_000 * length,
                              seed=5)  # fmt: skip
        x = task.x_test.view(-1, length, 2).double()
        values, marked = x[..., 0], x[..., 1] > 0
        target = (values * marked).sum(1)
        late = marked[:, -1]  # the second marker on the last element
        pi = 1.0 / (length - length // 2)
        known = target - values[:, -1] * marked[:, -1]  # what the past tells g
        prediction = known + pi * values[:, -1] + torch.where(late, (1 - pi) / 2, -pi / 2)
        mse = float(((prediction - target) ** 2).mean())
        floor = pi * (1 - pi) / 12
        assert float(late.double().mean()) == pytest.approx(pi, abs=0.01)
        assert mse == pytest.approx(floor, rel=0.05)
