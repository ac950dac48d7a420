"""Seeded two-domain raw logs with a planted cross-domain signal.

:func:`generate` (and :func:`simulate`, its in-memory logs) writes the same
raw files a user brings to ``dasl-prepare`` (``user_id,item_id,rating,timestamp``
CSV per domain, and side-feature tables), so that everything downstream is
exercised exactly as on real data. Data already in the prepared format, for
tests that start after ``dasl-prepare``, comes from :mod:`dasl_tf.planted`.

Model of the raw logs (all draws from one ``numpy`` generator seeded by ``seed``):

* Every user has two latent tastes ``p_u`` and ``q_u`` (unit vectors in
  ``R^latent_dim``) and *drifts* from one to the other over their own
  timeline: at relative time ``s`` in ``[0, 1]`` the current taste is
  ``z_u(s) = cos(drift * s * pi/2) p_u + sin(drift * s * pi/2) q_u``. The
  same taste drives both domains (the shared, cross-domain part).
* Items of each domain have latent vectors ``v_i`` (same space) and a
  popularity bias. At each event the user is shown ``num_candidates`` items of
  the domain drawn by popularity and picks the best under
  ``affinity(z, v) + Gumbel noise`` (exposure that follows taste), then rates
  it: ``rating = clip(round(3 + rating_scale * z.v + N(0, rating_noise)), 1, 5)``.
  Clicks (rating >= 4) therefore depend on the *current* taste.
* Domain B is dense (``mean_events_b`` events per user) and domain A sparse
  (``mean_events_a``); ``sparse_fraction`` of the users have at most two
  events in A, and ``single_domain_fraction`` of the users appear in one
  domain only. A user's recent B items reveal the current taste for an A
  target better than their few, stale A items: a model that reads the other
  domain's history can beat one that does not.
* Side features carry part of the signal: the user's ``segment`` is the
  argmax of the first ``num_segments`` coordinates of ``p_u`` and ``age`` is
  a noisy linear function of ``p_u``; items have ``genre`` (argmax of the
  first ``num_segments`` coordinates of ``v_i``), ``quality`` (a noisy copy of
  ``v_i``'s first coordinate) and ``price`` (noise only).

Example:

  >>> import tempfile
  >>> from dasl_tf import synthetic
  >>> paths = synthetic.generate(tempfile.mkdtemp(), synthetic.SyntheticConfig(num_users=200))
  >>> sorted(paths)
  ['input_a', 'input_b', 'item_features_a', 'item_features_b', 'user_features']
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv


INTERACTIONS_A = "interactions_a.csv"
INTERACTIONS_B = "interactions_b.csv"
USER_FEATURES = "user_features.csv"
ITEM_FEATURES_A = "item_features_a.csv"
ITEM_FEATURES_B = "item_features_b.csv"
_SECONDS_PER_DAY = 86400


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Size and shape of a synthetic two-domain dataset.

  Attributes:
    num_users: number of users.
    num_items_a: number of items of domain A.
    num_items_b: number of items of domain B.
    seed: seed of every random draw; equal configs give identical files.
    latent_dim: dimension of the shared taste space.
    mean_events_a: mean number of domain-A events of a regular user.
    mean_events_b: mean number of domain-B events of a regular user.
    sparse_fraction: fraction of users with at most two domain-A events.
    single_domain_fraction: fraction of users seen in one domain only (half
      of them in A only, half in B only).
    drift: how far the taste turns over a user's timeline, in quarter turns
      (0 = no drift, 1 = from ``p_u`` to an orthogonal ``q_u``).
    num_candidates: items shown per event, among which the user picks.
    choice_sharpness_a: weight of the taste in domain-A picks (0 = popularity only).
    choice_sharpness_b: weight of the taste in domain-B picks; B picks follow
      taste more closely than A picks, so B history reveals taste better.
    rating_scale: how strongly the affinity moves the rating.
    rating_noise: standard deviation of the rating noise.
    num_segments: categories of the user ``segment`` and item ``genre``.
    start_timestamp: unix time of the first possible event.
    time_span_days: length of the whole log in days.
  """
  num_users: int = 2000
  num_items_a: int = 400
  num_items_b: int = 400
  seed: int = 0
  latent_dim: int = 8
  mean_events_a: float = 12.0
  mean_events_b: float = 30.0
  sparse_fraction: float = 0.3
  single_domain_fraction: float = 0.1
  drift: float = 1.0
  num_candidates: int = 20
  choice_sharpness_a: float = 1.0
  choice_sharpness_b: float = 4.0
  rating_scale: float = 3.0
  rating_noise: float = 0.7
  num_segments: int = 4
  start_timestamp: int = 1_500_000_000
  time_span_days: int = 730

  def __post_init__(self):
    for name in ("num_users", "num_items_a", "num_items_b", "latent_dim", "num_candidates",
                 "time_span_days"):
      if getattr(self, name) < 1:
        raise ValueError(f"SyntheticConfig.{name} must be >= 1, got {getattr(self, name)}")
    for name in ("sparse_fraction", "single_domain_fraction"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"SyntheticConfig.{name} must be in [0, 1], got {getattr(self, name)}")
    for name in ("mean_events_a", "mean_events_b", "rating_noise", "drift"):
      if getattr(self, name) < 0:
        raise ValueError(f"SyntheticConfig.{name} must be >= 0, got {getattr(self, name)}")
    if not 1 <= self.num_segments <= self.latent_dim:
      raise ValueError(f"SyntheticConfig.num_segments must be in [1, latent_dim="
                       f"{self.latent_dim}], got {self.num_segments}")


@dataclasses.dataclass
class DomainLog:
  """One domain's generated events, in generation order.

  Attributes:
    user: user index per event, int64 [N].
    item: item index per event, int64 [N].
    rating: rating 1..5 per event, int64 [N].
    timestamp: unix seconds per event, int64 [N].
    relative_time: position of the event on its user's timeline, float [N].
  """
  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  relative_time: np.ndarray


@dataclasses.dataclass
class SyntheticData:
  """The generated world: latent factors (for checks) and the logs.

  Attributes:
    user_taste_start: p_u, float [num_users, latent_dim].
    user_taste_end: q_u, float [num_users, latent_dim].
    item_vectors_a: v_i of domain A, float [num_items_a, latent_dim].
    item_vectors_b: v_i of domain B, float [num_items_b, latent_dim].
    log_a: events of domain A.
    log_b: events of domain B.
  """
  user_taste_start: np.ndarray
  user_taste_end: np.ndarray
  item_vectors_a: np.ndarray
  item_vectors_b: np.ndarray
  log_a: DomainLog
  log_b: DomainLog

  def taste(self, user: np.ndarray, relative_time: np.ndarray, drift: float) -> np.ndarray:
    """z_u(s): the users' current tastes at relative times ``s``, float [N, latent_dim]."""
    return current_taste(self.user_taste_start, self.user_taste_end, user, relative_time, drift)


def current_taste(start: np.ndarray, end: np.ndarray, user: np.ndarray,
                  relative_time: np.ndarray, drift: float) -> np.ndarray:
  """z_u(s) = cos(drift*s*pi/2) p_u + sin(drift*s*pi/2) q_u, float [N, latent_dim]."""
  angle = (drift * np.pi / 2) * relative_time[:, None]
  return np.cos(angle) * start[user] + np.sin(angle) * end[user]


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
  vectors = rng.standard_normal((rows, dim))
  return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _orthogonal_to(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
  """Unit rows orthogonal to the unit rows of ``base``."""
  other = rng.standard_normal(base.shape)
  other -= np.sum(other * base, axis=1, keepdims=True) * base
  return other / np.maximum(np.linalg.norm(other, axis=1, keepdims=True), 1e-12)


def _event_counts(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
  """Events per user and domain, int [num_users, 2]."""
  n = config.num_users
  counts = np.stack([1 + rng.poisson(max(config.mean_events_a - 1, 0), n),
                     1 + rng.poisson(max(config.mean_events_b - 1, 0), n)], axis=1)
  role = rng.random(n)
  single = role < config.single_domain_fraction
  only_a = single & (rng.random(n) < 0.5)
  counts[single & ~only_a, 0] = 0
  counts[only_a, 1] = 0
  sparse = (~single) & (role < config.single_domain_fraction + config.sparse_fraction)
  counts[sparse, 0] = rng.integers(1, 3, sparse.sum())
  return counts


def _simulate_domain(rng: np.random.Generator, config: SyntheticConfig, start: np.ndarray,
                     end: np.ndarray, sharpness: float, counts: np.ndarray,
                     user_start: np.ndarray, user_span: np.ndarray,
                     item_vectors: np.ndarray) -> DomainLog:
  """Draws one domain's events: times, exposures, picks and ratings."""
  user = np.repeat(np.arange(config.num_users), counts)
  relative_time = rng.random(user.size)
  num_items = item_vectors.shape[0]
  popularity = rng.lognormal(0.0, 1.0, num_items)
  popularity /= popularity.sum()
  shown = rng.choice(num_items, size=(user.size, config.num_candidates), p=popularity)
  taste = current_taste(start, end, user, relative_time, config.drift)
  affinity = np.einsum("nd,ncd->nc", taste, item_vectors[shown])
  pick = np.argmax(sharpness * affinity + rng.gumbel(size=affinity.shape), axis=1)
  item = shown[np.arange(user.size), pick]
  chosen_affinity = affinity[np.arange(user.size), pick]
  rating = np.clip(np.rint(3.0 + config.rating_scale * chosen_affinity
                           + rng.normal(0.0, config.rating_noise, user.size)), 1, 5)
  timestamp = user_start[user] + (relative_time * user_span[user]).astype(np.int64)
  # One event per (user, item): keep the earliest, as a real log would list it once.
  order = np.lexsort((timestamp, item, user))
  first = np.ones(order.size, dtype=bool)
  first[1:] = (user[order][1:] != user[order][:-1]) | (item[order][1:] != item[order][:-1])
  keep = np.sort(order[first])
  return DomainLog(user=user[keep], item=item[keep], rating=rating[keep].astype(np.int64),
                   timestamp=timestamp[keep], relative_time=relative_time[keep])


def simulate(config: SyntheticConfig) -> SyntheticData:
  """Draws the latent world and both domains' events (no files written)."""
  rng = np.random.default_rng(config.seed)
  p = _unit_rows(rng, config.num_users, config.latent_dim)
  q = _orthogonal_to(rng, p)
  vectors_a = _unit_rows(rng, config.num_items_a, config.latent_dim)
  vectors_b = _unit_rows(rng, config.num_items_b, config.latent_dim)
  counts = _event_counts(rng, config)
  span_seconds = config.time_span_days * _SECONDS_PER_DAY
  user_span = (span_seconds * rng.uniform(0.3, 1.0, config.num_users)).astype(np.int64)
  user_start = config.start_timestamp + (rng.random(config.num_users)
                                         * (span_seconds - user_span)).astype(np.int64)
  log_a = _simulate_domain(rng, config, p, q, config.choice_sharpness_a, counts[:, 0],
                           user_start, user_span, vectors_a)
  log_b = _simulate_domain(rng, config, p, q, config.choice_sharpness_b, counts[:, 1],
                           user_start, user_span, vectors_b)
  return SyntheticData(p, q, vectors_a, vectors_b, log_a, log_b)


def _prefixed(prefix: str, index: np.ndarray, width: int) -> pa.Array:
  digits = pc.utf8_lpad(pc.cast(pa.array(index, pa.int64()), pa.string()), width, "0")
  return pc.binary_join_element_wise(prefix, digits, "")


def user_name(index: np.ndarray) -> pa.Array:
  """Raw user ids written to the files (``u000042``)."""
  return _prefixed("u", index, 6)


def item_name(domain: str, index: np.ndarray) -> pa.Array:
  """Raw item ids of a domain (``a00042`` / ``b00042``)."""
  return _prefixed(domain, index, 5)


def _write_csv(path: str, header: str, columns) -> None:
  """Writes equally long columns as a CSV with a header row (no quoting)."""
  table = pa.table({name: pa.array(column) for name, column in zip(header.split(","), columns)})
  with open(path, "wb") as f:
    f.write((header + "\n").encode("utf-8"))
    pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False, quoting_style="none"))


def _write_log(path: str, domain: str, log: DomainLog) -> None:
  order = np.lexsort((log.timestamp, log.user))
  _write_csv(path, "user_id,item_id,rating,timestamp",
             [user_name(log.user[order]), item_name(domain, log.item[order]),
              log.rating[order], log.timestamp[order]])


def _write_item_features(path: str, rng: np.random.Generator, domain: str,
                         vectors: np.ndarray, num_segments: int) -> None:
  genre = np.argmax(vectors[:, :num_segments], axis=1)
  quality = vectors[:, 0] + rng.normal(0.0, 0.3, len(vectors))
  price = rng.lognormal(2.0, 0.5, len(vectors))
  _write_csv(path, "item_id,quality,price,genre",
             [item_name(domain, np.arange(len(vectors))), np.round(quality, 4),
              np.round(price, 2), pc.binary_join_element_wise("g", genre.astype(str), "")])


def generate(output_dir: str, config: SyntheticConfig = SyntheticConfig()) -> Dict[str, str]:
  """Writes a synthetic two-domain dataset in the raw format of real logs.

  Args:
    output_dir: directory to write into (created if needed). Existing files of
      the same names are replaced: the output is a pure function of ``config``.
    config: sizes, seed and shape of the data.

  Returns:
    Paths keyed as the ``dasl-prepare`` flags: ``input_a``, ``input_b``
    (``user_id,item_id,rating,timestamp`` CSVs), ``user_features``
    (``user_id,age,activity,segment``), ``item_features_a`` and
    ``item_features_b`` (``item_id,quality,price,genre``).
  """
  os.makedirs(output_dir, exist_ok=True)
  data = simulate(config)
  rng = np.random.default_rng([config.seed, 1])
  paths = {
      "input_a": os.path.join(output_dir, INTERACTIONS_A),
      "input_b": os.path.join(output_dir, INTERACTIONS_B),
      "user_features": os.path.join(output_dir, USER_FEATURES),
      "item_features_a": os.path.join(output_dir, ITEM_FEATURES_A),
      "item_features_b": os.path.join(output_dir, ITEM_FEATURES_B),
  }
  _write_log(paths["input_a"], "a", data.log_a)
  _write_log(paths["input_b"], "b", data.log_b)
  users = np.arange(config.num_users)
  segment = np.argmax(data.user_taste_start[:, :config.num_segments], axis=1)
  age = 35 + 8 * data.user_taste_start[:, 1] + rng.normal(0.0, 3.0, config.num_users)
  activity = np.log1p(np.bincount(data.log_a.user, minlength=config.num_users)
                      + np.bincount(data.log_b.user, minlength=config.num_users))
  _write_csv(paths["user_features"], "user_id,age,activity,segment",
             [user_name(users), np.round(age, 2), np.round(activity, 4),
              pc.binary_join_element_wise("s", segment.astype(str), "")])
  _write_item_features(paths["item_features_a"], rng, "a", data.item_vectors_a,
                       config.num_segments)
  _write_item_features(paths["item_features_b"], rng, "b", data.item_vectors_b,
                       config.num_segments)
  return paths
