"""The scikit-learn wrapper: scikit-learn's tools accept it, and it learns as well as MLPClassifier.

scikit-learn (and the wrapper, which subclasses its BaseEstimator) is imported inside each test:
the import takes about 3 s, and at module level every test worker would pay it while collecting.
"""

import warnings

import numpy as np
import pytest

from pipeline.data.sources import digits_arrays

# Checks the estimator is expected to fail, {check name: reason} (scikit-learn's
# expected_failed_checks). None: every applicable check of scikit-learn 1.9.1 passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}
# Checks that do not apply, {name: reason}: scikit-learn reports them as skipped.
NOT_APPLICABLE = {
    "check_array_api_input": "the network computes in NumPy only (no array API support); scikit-learn "
    "itself skips this check unless SCIPY_ARRAY_API is set",
}


# epochs=5: the checks fit about a hundred times; at the default 60 epochs they take ~16 s on two
# shared cores, at 5 about 1 s, and the accuracy check (check_classifiers_train) still passes.
def test_scikit_learn_estimator_checks() -> None:
    """scikit-learn's whole estimator suite, every failing check named in the assertion."""
    from sklearn.utils.estimator_checks import check_estimator

    from pipeline.estimator import NumpyMLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SkipTestWarning of the check that does not apply
        results = check_estimator(
            NumpyMLPClassifier(epochs=5), expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None
        )
    status = {r["check_name"]: r["status"] for r in results}
    failed = [f"{r['check_name']}: {r['exception']!r}" for r in results if r["status"] == "failed"]
    assert not failed, "\n".join(failed)
    assert {name for name, s in status.items() if s == "skipped"} == set(NOT_APPLICABLE)
    assert sum(s == "passed" for s in status.values()) >= 50  # 54 with scikit-learn 1.9.1


def test_a_continuous_target_and_a_single_class_are_rejected_in_scikit_learns_words() -> None:
    from pipeline.estimator import NumpyMLPClassifier

    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        NumpyMLPClassifier(epochs=1).fit(X, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="at least 2 classes in the data, but the data contains only one class: 'a'"):
        NumpyMLPClassifier(epochs=1).fit(X, np.array(["a"] * 20))


@pytest.fixture(scope="module")
def digits():
    X, y = digits_arrays()
    return X / 16.0, y


def test_clone_cross_val_score_and_learning_curve_accept_it(digits) -> None:
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score, learning_curve

    from pipeline.estimator import NumpyMLPClassifier

    X, y = digits
    clf = NumpyMLPClassifier(hidden_layers=(16,), epochs=10, learning_rate=0.01, random_state=1)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "weights_")
    twin.set_params(epochs=3)
    assert twin.epochs == 3
    scores = cross_val_score(clf, X[:600], y[:600], cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)
    _, train_scores, _ = learning_curve(clf, X[:600], y[:600], cv=3, train_sizes=[0.5, 1.0])
    assert train_scores.shape == (2, 3)


def test_predict_proba_rows_sum_to_one_and_labels_come_back_as_given(digits) -> None:
    from pipeline.estimator import NumpyMLPClassifier

    X, y = digits
    names = np.array(["even", "odd"])[y % 2]
    clf = NumpyMLPClassifier(hidden_layers=(8,), epochs=10, learning_rate=0.01).fit(X[:300], names[:300])
    P = clf.predict_proba(X[300:350])
    assert P.shape == (50, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert set(clf.predict(X[300:350])) <= {"even", "odd"}
    assert clf.score(X[300:600], names[300:600]) > 0.7


@pytest.mark.slow  # end to end
def test_digits_accuracy_is_comparable_to_mlpclassifier_with_the_same_architecture_and_budget(digits) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from pipeline.estimator import NumpyMLPClassifier

    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    budget = {"epochs": 60, "batch": 64, "lr": 1e-3, "l2": 1e-4}
    ours = NumpyMLPClassifier(
        hidden_layers=(64, 32),
        learning_rate=budget["lr"],
        epochs=budget["epochs"],
        batch_size=budget["batch"],
        optimizer="adam",
        l2_lambda=budget["l2"],
        random_state=0,
    ).fit(X_train, y_train)
    sk = MLPClassifier(
        hidden_layer_sizes=(64, 32),
        learning_rate_init=budget["lr"],
        max_iter=budget["epochs"],
        batch_size=budget["batch"],
        solver="adam",
        alpha=budget["l2"],
        tol=0,
        n_iter_no_change=10**9,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X_train, y_train)
    ours_acc, sk_acc = ours.score(X_test, y_test), sk.score(X_test, y_test)
    print(f"digits test accuracy: pipeline {ours_acc:.4f}, MLPClassifier {sk_acc:.4f}")
    assert ours_acc > 0.95
    assert abs(ours_acc - sk_acc) <= 0.02
