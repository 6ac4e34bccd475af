"""
The scikit-learn estimators in a pipeline and a grid search
===========================================================

:class:`fastnn.MLPRegressor` and :class:`fastnn.MLPClassifier` take
scikit-learn's ``MLPRegressor``/``MLPClassifier`` parameter names, so they
go where scikit-learn estimators go: here a ``Pipeline`` that standardises
the input, inside a ``GridSearchCV`` over the hidden layers and the learning
rate, on the Friedman #1 regression problem. (scikit-learn is needed for
these two estimators only.)
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import fastnn

X, y = make_friedman1(n_samples=600, noise=0.5, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

pipeline = Pipeline([("scale", StandardScaler()),
                     ("mlp", fastnn.MLPRegressor(solver="adam", max_iter=80, random_state=0))])
search = GridSearchCV(pipeline, {"mlp__hidden_layer_sizes": [(16,), (32, 32)],
                                 "mlp__learning_rate_init": [0.001, 0.01]}, cv=3)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)       # max_iter=80 stops some fits early
    search.fit(X_train, y_train)

print("best parameters:", search.best_params_)
print(f"cross-validated R^2 of the best: {search.best_score_:.3f}")
print(f"R^2 on held-out data: {search.score(X_test, y_test):.3f}")

# %%
# Every candidate's mean cross-validated score, and the best model's
# predictions against the truth on the held-out data.

results = search.cv_results_
names = [f"{p['mlp__hidden_layer_sizes']}, lr {p['mlp__learning_rate_init']}" for p in results["params"]]
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.barh(names, results["mean_test_score"], xerr=results["std_test_score"], color="tab:orange")
left.set_xlabel("mean R^2 over 3 folds")
left.set_title("the grid")
right.scatter(y_test, search.predict(X_test), s=8, color="tab:orange")
right.plot([y.min(), y.max()], [y.min(), y.max()], color="tab:blue")
right.set_xlabel("true y")
right.set_ylabel("predicted y")
right.set_title("the best pipeline, held-out data")
fig.tight_layout()
plt.show()

# %%
# The fitted network is a :class:`fastnn.Sequential` (``model_``), and the
# loss of each epoch is in ``loss_curve_``, as in scikit-learn.

best = search.best_estimator_.named_steps["mlp"]
print(type(best.model_).__name__, [type(layer).__name__ for layer in best.model_.layers])
print(f"{len(best.loss_curve_)} epochs, last loss {best.loss_curve_[-1]:.4f}")
