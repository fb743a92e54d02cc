"""The network's math: gradients, agreement with scikit-learn, dropout, L2, stability."""

import warnings

import numpy as np
import pytest

from pipeline.nn import Architecture, compute_cost, encode_labels, forward, gradient_check, initialize, predict
from pipeline.nn.activations import ACTIVATIONS, DERIVATIVES, OUTPUTS, OVERWRITES_Z, relu
from pipeline.nn.network import LayerCache, StepBuffers, backward, grouped
from pipeline.nn.optim import OPTIMIZERS


def small_problem(n_classes: int, activation: str, seed: int = 0, dtype: str = "float64"):
    rng = np.random.default_rng(seed)
    arch = Architecture.build(4, n_classes, (5, 3), activation, "xavier", dtype)
    X = rng.standard_normal((4, 9))
    y = rng.integers(0, n_classes, 9)
    return arch, X, y, initialize(arch, rng)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_gradient_check_passes_for_every_activation_and_output(activation: str, n_classes: int) -> None:
    arch, X, y, weights = small_problem(n_classes, activation)
    assert arch.output == ("sigmoid" if n_classes == 2 else "softmax")
    assert gradient_check(X, y, weights, arch, l2_lambda=0.7) < 1e-7


def test_gradient_check_catches_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    arch, X, y, weights = small_problem(3, "tanh")
    broken = dict(DERIVATIVES, tanh=lambda dA, Z, A: dA)  # forgets the 1 - A^2 factor
    monkeypatch.setattr("pipeline.nn.network.DERIVATIVES", broken)
    assert gradient_check(X, y, weights, arch) > 1e-3


@pytest.mark.parametrize("activation,sk_activation", [("relu", "relu"), ("tanh", "tanh"), ("sigmoid", "logistic")])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_cost_and_gradients_match_scikit_learn(activation: str, sk_activation: str, n_classes: int) -> None:
    # imported here, not at the top: scikit-learn takes ~3 s to import, paid only by the worker running this
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(1)
    m, l2 = 40, 0.3
    X = rng.standard_normal((m, 6))
    y = np.arange(m) % n_classes
    arch = Architecture.build(6, n_classes, (7, 5), activation)
    weights = initialize(arch, rng)

    clf = MLPClassifier(hidden_layer_sizes=(7, 5), activation=sk_activation, alpha=l2, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    L = arch.n_layers
    clf.coefs_ = [weights[f"W{l}"].T.copy() for l in range(1, L + 1)]
    clf.intercepts_ = [weights[f"b{l}"].ravel().copy() for l in range(1, L + 1)]
    Y_sk = encode_labels(y, arch).T  # sklearn's binarized targets: (m, 1) or one-hot (m, K)
    activations = [X] + [None] * L
    deltas = [None] * L
    coef_grads = [np.empty_like(c) for c in clf.coefs_]
    intercept_grads = [np.empty_like(b) for b in clf.intercepts_]
    sk_loss, sk_dW, sk_db = clf._backprop(X, Y_sk, None, activations, deltas, coef_grads, intercept_grads)

    Y = encode_labels(y, arch)
    ZL, caches = forward(X.T, weights, arch)
    cost = compute_cost(ZL, Y, arch, weights, l2)
    grads = backward(ZL, Y, caches, weights, arch, l2)
    assert cost == pytest.approx(sk_loss, abs=1e-10)
    for l in range(1, L + 1):
        np.testing.assert_allclose(grads[f"dW{l}"], sk_dW[l - 1].T, rtol=0, atol=1e-10)
        np.testing.assert_allclose(grads[f"db{l}"].ravel(), sk_db[l - 1], rtol=0, atol=1e-10)


def test_dropout_preserves_the_expected_activation_and_is_off_at_prediction() -> None:
    rng = np.random.default_rng(2)
    arch = Architecture.build(3, 3, (50,), "relu")
    weights = initialize(arch, rng)
    X = rng.standard_normal((3, 4))
    plain_Z, plain = forward(X, weights, arch)
    keep_prob, draws = 0.7, 4000
    mean_input = np.zeros_like(plain[1].A_prev)
    for _ in range(draws):
        _, caches = forward(X, weights, arch, keep_prob, rng)
        mean_input += caches[1].A_prev  # the dropped, rescaled hidden activation fed to the output
    mean_input /= draws
    kept = plain[1].A_prev
    # each unit's mean over masks estimates a / keep_prob * keep_prob = a; 6 standard errors of slack
    stderr = kept * np.sqrt((1 - keep_prob) / keep_prob / draws)
    assert np.all(np.abs(mean_input - kept) <= 6 * stderr + 1e-12)
    dropped_fraction = np.mean(caches[0].mask == 0)
    assert dropped_fraction == pytest.approx(1 - keep_prob, abs=0.1)
    # prediction: no mask, no scaling, and the same answer every time
    again_Z, again = forward(X, weights, arch)
    np.testing.assert_array_equal(again_Z, plain_Z)
    assert again[0].mask is None
    np.testing.assert_array_equal(predict(X, weights, arch), predict(X, weights, arch))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_classes", [2, 5])
def test_cost_is_finite_when_outputs_saturate(dtype: str, n_classes: int) -> None:
    arch = Architecture.build(2, n_classes, (3,), dtype=dtype)
    n_out = arch.layer_dims[-1]
    ZL = np.full((n_out, 4), 1e4, dtype=dtype)
    ZL[0] = -1e4  # confidently wrong where y = 0 is the truth, confidently right elsewhere
    y = np.array([0, 0, 1, 1])
    Y = encode_labels(y, arch)
    weights = initialize(arch, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow or divide-by-zero warnings fail the test
        cost = compute_cost(ZL, Y, arch, weights, l2_lambda=0.1)
        probabilities = OUTPUTS[arch.output][0](ZL)
    assert np.isfinite(cost) and cost > 1000  # large, as confidently wrong answers should be
    assert np.all(np.isfinite(probabilities))


def test_a_larger_lambda_gives_a_larger_cost_for_the_same_weights() -> None:
    arch, X, y, weights = small_problem(3, "relu")
    ZL, _ = forward(X, weights, arch)
    Y = encode_labels(y, arch)
    costs = [compute_cost(ZL, Y, arch, weights, lam) for lam in (0.0, 0.1, 1.0)]
    assert costs[0] < costs[1] < costs[2]
    squares = sum(float(np.sum(weights[k] ** 2)) for k in weights if k.startswith("W"))
    assert costs[2] - costs[0] == pytest.approx(1.0 / (2 * X.shape[1]) * squares)


def test_initializers_scale_by_fan_in() -> None:
    rng = np.random.default_rng(0)
    for init, expected in [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400)), ("random", 0.01)]:
        w = initialize(Architecture((400, 300, 1), init=init), rng)
        assert w["W1"].std() == pytest.approx(expected, rel=0.05)
        assert not w["b1"].any()
    assert not initialize(Architecture((4, 3, 1), init="zeros"), rng)["W1"].any()


def test_architecture_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="sigmoid"):
        Architecture((4, 2))
    with pytest.raises(ValueError, match="hidden_activation"):
        Architecture((4, 3, 1), hidden_activation="swish")
    assert Architecture.build(4, 2).layer_dims == (4, 1)


def test_prediction_runs_in_column_chunks_without_copying_the_rows(tmp_path, monkeypatch) -> None:
    """Chunked prediction gives the labels and probabilities of one pass, and a float64 network on
    float32 rows converts a chunk at a time, never the whole file."""
    import tracemalloc

    from pipeline.nn import network
    from pipeline.nn.network import predict_proba

    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.standard_normal((5000, 256), dtype=np.float32))
    X = np.load(tmp_path / "X.npy", mmap_mode="r").T  # (n_x, m) columns of a row-major map
    arch = Architecture.build(256, 10, (64,), dtype="float64")
    weights = initialize(arch, np.random.default_rng(1))
    whole_labels, whole_proba = predict(X, weights, arch), predict_proba(X, weights, arch)
    monkeypatch.setattr(network, "PREDICT_BYTES", 2**15)  # 64 columns per chunk
    tracemalloc.start()
    try:
        labels = predict(X, weights, arch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(labels, whole_labels)
    np.testing.assert_allclose(predict_proba(X, weights, arch), whole_proba, rtol=1e-12)
    assert peak < X.nbytes / 10, f"peak {peak / 1e6:.2f} MB for {X.nbytes / 1e6:.1f} MB of rows"


def test_grouped_views_share_two_flat_arrays_and_keep_the_values() -> None:
    arch = Architecture((5, 4, 3, 1), dtype="float32")
    weights = initialize(arch, np.random.default_rng(0))
    views, flat = grouped(weights)
    assert list(views) == list(weights) and sorted(flat) == ["W", "b"]
    assert flat["W"].size == 5 * 4 + 4 * 3 + 3 and flat["b"].size == 4 + 3 + 1
    for name, W in weights.items():
        assert views[name].shape == W.shape and views[name].flags.c_contiguous
        assert np.array_equal(views[name], W) and np.shares_memory(views[name], flat[name[0]])
    flat["W"] += 1  # what the optimizer does to the flat array, every layer sees
    assert np.array_equal(views["W2"], weights["W2"] + 1)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_an_update_of_the_flat_arrays_is_bit_for_bit_the_per_layer_update(optimizer: str) -> None:
    """What lets fit hand two flat arrays to the optimizer: its arithmetic is elementwise."""
    arch = Architecture((6, 5, 4, 3), dtype="float32")
    rng = np.random.default_rng(1)
    per_layer = initialize(arch, rng)
    views, flat = grouped(per_layer)
    steps = [{"d" + k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in per_layer.items()} for _ in range(4)]
    one = OPTIMIZERS[optimizer](per_layer, 0.9, 0.999, 1e-8)
    two = OPTIMIZERS[optimizer](flat, 0.9, 0.999, 1e-8)
    for grads in steps:
        _, flat_grads = grouped(grads)
        one.step(per_layer, {k: v.copy() for k, v in grads.items()}, 0.01, 0.5, 32)
        two.step(flat, flat_grads, 0.01, 0.5, 32)
    for name in per_layer:
        assert views[name].tobytes() == per_layer[name].tobytes(), name


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_relu_writes_its_output_over_z_and_backward_gives_the_gradients_of_separate_arrays(activation: str) -> None:
    """OVERWRITES_Z: one array serves as Z and A in relu's caches, and nothing downstream changes."""
    arch = Architecture((6, 5, 4, 3), activation, dtype="float64")
    rng = np.random.default_rng(2)
    weights = initialize(arch, rng)
    X, y = rng.standard_normal((6, 9)), rng.integers(0, 3, 9)
    ZL, caches = forward(X, weights, arch)
    Y = encode_labels(y, arch)
    for cache in caches[:-1]:
        assert (cache.Z is cache.A) == (activation in OVERWRITES_Z)
    assert (StepBuffers.allocate(arch, 9).A == ()) == (activation in OVERWRITES_Z)
    # the reference: every layer's Z and A in arrays of their own, the pre-activation kept
    A_prev, separate = X, []
    for l in range(1, arch.n_layers):
        Z = weights[f"W{l}"] @ A_prev + weights[f"b{l}"]
        A = ACTIVATIONS[activation](Z.copy())
        separate.append(LayerCache(A_prev, Z, A, None))
        A_prev = A
    separate.append(LayerCache(A_prev, caches[-1].Z, None, None))
    np.testing.assert_allclose(ZL, weights[f"W{arch.n_layers}"] @ A_prev + weights[f"b{arch.n_layers}"], rtol=1e-12)
    for name, g in backward(ZL, Y, caches, weights, arch).items():
        np.testing.assert_array_equal(g, backward(ZL, Y, separate, weights, arch)[name], err_msg=name)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("keep_prob", [1.0, 0.7])
def test_backward_into_step_buffers_gives_the_gradients_of_fresh_arrays(activation: str, keep_prob: float) -> None:
    """fit's step: with relu, backward writes each dA and dZ over the activations it has read."""
    arch = Architecture((6, 5, 4, 1), activation, dtype="float32")
    weights = initialize(arch, np.random.default_rng(3))
    X = np.asfortranarray(np.random.default_rng(4).standard_normal((6, 11)), dtype=np.float32)
    Y = encode_labels(np.random.default_rng(5).integers(0, 2, 11), arch)
    fresh_ZL, fresh_caches = forward(X, weights, arch, keep_prob, np.random.default_rng(6))
    expected = backward(fresh_ZL, Y, fresh_caches, weights, arch)
    buffers = StepBuffers.allocate(arch, 11)
    ZL, caches = forward(X, weights, arch, keep_prob, np.random.default_rng(6), buffers)
    A1 = caches[0].A.copy()
    grads = backward(ZL, Y, caches, weights, arch, buffers=buffers)
    for name, g in expected.items():
        assert grads[name].tobytes() == g.tobytes(), name
    assert np.array_equal(caches[0].A, A1) == (activation not in OVERWRITES_Z)  # relu's A: now its dZ


def test_relu_against_an_array_of_zeros_gives_the_bits_of_relu_against_0() -> None:
    """activations.relu's ``zeros`` (fit's faster loop) changes no value, special values included."""
    special = [-0.0, 0.0, np.nan, np.inf, -np.inf, -1.0, 2.0, 1e-45, -1e-45]
    for dtype in (np.float32, np.float64):
        Z = np.asfortranarray(np.array(special * 7, dtype=dtype).reshape(9, 7))
        assert relu(Z.copy(), zeros=np.zeros_like(Z)).tobytes() == relu(Z.copy()).tobytes()
        assert not np.signbit(relu(Z, zeros=np.zeros_like(Z))).any()  # +0.0 for -0.0 and -inf


def test_step_buffers_zeros_are_views_of_one_array_that_no_step_writes() -> None:
    arch = Architecture((6, 5, 4, 1), "relu", dtype="float32")
    weights = initialize(arch, np.random.default_rng(7))
    Y = encode_labels(np.random.default_rng(8).integers(0, 2, 11), arch)
    buffers = StepBuffers.allocate(arch, 11)
    assert len(buffers.zeros) == 2 and np.shares_memory(buffers.zeros[0], buffers.zeros[1])
    for k in (11, 7):  # a full and a partial (last) batch
        X = np.asfortranarray(np.random.default_rng(k).standard_normal((6, k)), dtype=np.float32)
        step = buffers.columns(k)
        assert all(z.shape == (n, k) and z.flags.f_contiguous for z, n in zip(step.zeros, (5, 4), strict=True))
        ZL, caches = forward(X, weights, arch, buffers=step)
        assert ZL.tobytes() == forward(X, weights, arch)[0].tobytes()
        backward(ZL, Y[:, :k], caches, weights, arch, buffers=step)
        assert not any(z.any() for z in buffers.zeros)
    assert StepBuffers.allocate(Architecture((6, 5, 1), "tanh"), 3).zeros == ()
