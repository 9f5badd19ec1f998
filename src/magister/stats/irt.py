"""Item response theory: a (multidimensional) two-parameter logistic model of who gets what right.

P(model i answers item j correctly) = sigmoid(theta_i . a_j - b_j)

theta_i (a vector of `dims` abilities) describes a model, a_j (discrimination) and b_j
(difficulty) describe an item. Given a correctness matrix (models x items, 1 right, 0
wrong, NaN not sat) all three are fitted jointly by maximum a posteriori: Gaussian priors
keep items that every model got right (or wrong) finite, discriminations shrink towards
their common mean (with few models, one item's own discrimination is mostly noise), and
L-BFGS with the analytic gradient fits 28 models x 12,000 items in seconds on a CPU.

With the items fitted, a new model's ability is a small MAP fit on whatever items it sat,
and its expected accuracy on the whole exam is the mean predicted probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIOR_SD_ABILITY = 1.0
PRIOR_SD_DISCRIMINATION = 0.3  # around the items' common mean: 27 models say little about one item
PRIOR_SD_DIFFICULTY = 3.0


@dataclass
class ItemParams:
    """Fitted items (and the abilities of the models they were fitted on)."""

    discrimination: np.ndarray  # (n_items, dims)
    difficulty: np.ndarray  # (n_items,)
    ability: np.ndarray  # (n_models, dims) of the training models

    @property
    def dims(self) -> int:
        return self.discrimination.shape[1]

    def probabilities(self, ability: np.ndarray) -> np.ndarray:
        """P(correct) on every item for one ability vector (dims,) or many (n, dims)."""
        return _sigmoid(ability @ self.discrimination.T - self.difficulty)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # stable for large |z|


def fit_2pl(correct: np.ndarray, dims: int = 1, max_iter: int = 2000) -> ItemParams:
    """Fit a `dims`-dimensional 2PL model to a models x items matrix of 0, 1 and NaN (missing)."""
    from scipy.optimize import minimize

    y = np.asarray(correct, dtype=float)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(f"need a models x items matrix with at least 2 of each, got shape {y.shape}")
    mask = ~np.isnan(y)
    y = np.where(mask, y, 0.0)
    m, n = y.shape
    # Start from what the data says: abilities from each model's accuracy, difficulties from each item's.
    rate_model = (y.sum(1) + 1) / (mask.sum(1) + 2)
    rate_item = (y.sum(0) + 1) / (mask.sum(0) + 2)
    logit_model = np.log(rate_model / (1 - rate_model))
    theta0 = np.zeros((m, dims))
    theta0[:, 0] = (logit_model - logit_model.mean()) / (logit_model.std() + 1e-9)
    theta0[:, 1:] = np.random.default_rng(0).normal(0, 0.1, (m, dims - 1))
    a0 = np.full((n, dims), 0.1)
    a0[:, 0] = 1.0
    b0 = -np.log(rate_item / (1 - rate_item))

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return x[:m * dims].reshape(m, dims), x[m * dims:(m + n) * dims].reshape(n, dims), x[(m + n) * dims:]

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, a, b = unpack(x)
        z = theta @ a.T - b
        # -log-likelihood of Bernoulli(sigmoid(z)), masked
        nll = np.sum(mask * (np.logaddexp(0, z) - y * z))
        r = mask * (_sigmoid(z) - y)  # d nll / d z
        g_theta = r @ a + theta / PRIOR_SD_ABILITY ** 2
        a_mean = a.mean(0)  # discriminations shrink towards their common mean (a hierarchical prior)
        g_a = r.T @ theta + (a - a_mean) / PRIOR_SD_DISCRIMINATION ** 2
        g_b = -r.sum(0) + b / PRIOR_SD_DIFFICULTY ** 2
        prior = (np.sum(theta ** 2) / PRIOR_SD_ABILITY ** 2 + np.sum((a - a_mean) ** 2) / PRIOR_SD_DISCRIMINATION ** 2
                 + np.sum(b ** 2) / PRIOR_SD_DIFFICULTY ** 2) / 2
        return nll + prior, np.concatenate([g_theta.ravel(), g_a.ravel(), g_b])

    x0 = np.concatenate([theta0.ravel(), a0.ravel(), b0])
    result = minimize(loss, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    theta, a, b = unpack(result.x)
    return _standardise(ItemParams(discrimination=a, difficulty=b, ability=theta))


def _standardise(items: ItemParams) -> ItemParams:
    """Re-express the same fit with abilities of mean 0 and identity covariance.

    The likelihood only sees theta . a - b, so the scale between abilities and
    discriminations is arbitrary; the priors settle it in a way that depends on how many
    models and items there are. Whitening puts the training models' abilities on N(0, I),
    which then is the right prior for a new model's ability (`fit_ability`).
    """
    theta, a, b = items.ability, items.discrimination, items.difficulty
    mean = theta.mean(0)
    cov = np.atleast_2d(np.cov(theta, rowvar=False)) + 1e-9 * np.eye(theta.shape[1])
    root = np.linalg.cholesky(cov)  # cov = root @ root.T
    white = np.linalg.solve(root, (theta - mean).T).T  # theta = mean + white @ root.T
    return ItemParams(discrimination=a @ root, difficulty=b - a @ mean, ability=white)


def fit_ability(items: ItemParams, index: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """MAP ability of one model from its 0/1 answers to the items at `index`."""
    from scipy.optimize import minimize

    a, b = items.discrimination[index], items.difficulty[index]
    y = np.asarray(correct, dtype=float)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = a @ theta - b
        r = _sigmoid(z) - y
        return (np.sum(np.logaddexp(0, z) - y * z) + theta @ theta / (2 * PRIOR_SD_ABILITY ** 2),
                a.T @ r + theta / PRIOR_SD_ABILITY ** 2)

    return minimize(loss, np.zeros(items.dims), jac=True, method="L-BFGS-B").x
