"""docs/sklearn.md's table: MeshClassifier / MeshRegressor (defaults) against LogisticRegression,
MLPClassifier, Ridge and MLPRegressor on scikit-learn's bundled data sets, the same 5 shuffled
CV folds (random_state=0) for every estimator.  Run: python benchmarks/sklearn_compare.py"""

from __future__ import annotations

import warnings

from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from meshprop.sklearn import MeshClassifier, MeshRegressor


def main() -> None:
    warnings.filterwarnings("ignore")  # MLP convergence notices
    print("| data set | estimator | mean ± std over 5 folds |\n| --- | --- | --- |")
    for name, loader in [
        ("breast_cancer", load_breast_cancer),
        ("iris", load_iris),
        ("wine", load_wine),
    ]:
        X, y = loader(return_X_y=True)
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        for label, est in [
            ("MeshClassifier()", MeshClassifier(random_state=0)),
            (
                "StandardScaler + LogisticRegression",
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            ),
            (
                "StandardScaler + MLPClassifier",
                make_pipeline(StandardScaler(), MLPClassifier(random_state=0, max_iter=1000)),
            ),
        ]:
            s = cross_val_score(est, X, y, cv=cv)
            print(f"| {name} (accuracy) | {label} | {s.mean():.4f} ± {s.std():.4f} |", flush=True)
    X, y = load_diabetes(return_X_y=True)
    cv = KFold(5, shuffle=True, random_state=0)
    for label, est in [
        ("MeshRegressor()", MeshRegressor(random_state=0)),
        ("StandardScaler + Ridge", make_pipeline(StandardScaler(), Ridge())),
        (
            "StandardScaler + MLPRegressor",
            make_pipeline(StandardScaler(), MLPRegressor(random_state=0, max_iter=2000)),
        ),
    ]:
        s = cross_val_score(est, X, y, cv=cv, scoring="r2")
        print(f"| diabetes (R²) | {label} | {s.mean():.4f} ± {s.std():.4f} |", flush=True)


if __name__ == "__main__":
    main()
