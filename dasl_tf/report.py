"""Human-readable evaluation: a Markdown report with PNG plots, and the experiment tables.

:func:`write_report` writes ``<model_dir>/report/``:

* ``report.md``: the evaluation metrics per domain, headed by the full-catalogue
  HR@10 and NDCG@10 (sampled HR@10 and AUC beside them; keys in
  :mod:`dasl_tf.metrics`), and the run's accounting,
* ``roc.png``: the ROC curve of each domain (each example scored by its own
  domain's head),
* ``training_curves.png``: per-head training and evaluation loss and AUC per epoch,
* ``attention.png``: for a few evaluation examples of each domain, the weights
  that domain's head put on the records of both domains' histories (only for
  models that expose ``attention_weights``; the report says so otherwise).

:func:`summarize_runs` and :func:`experiment_table_markdown` turn many runs
(variants x folds or seeds) into a table like the paper's Tables 4 and 5:
mean +- standard deviation per domain and metric, the full-catalogue HR@10 and
NDCG@10 first, then the in-vocabulary full-catalogue HR@10, the sampled HR@10
and the AUC.
"""
from __future__ import annotations

import io
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
# pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf import json_io
from dasl_tf import metrics as metrics_lib
from dasl_tf import publish
# pylint: enable=g-import-not-at-top,wrong-import-position

REPORT_FILE = "report.md"
ROC_FILE = "roc.png"
CURVES_FILE = "training_curves.png"
ATTENTION_FILE = "attention.png"
# Per domain, in table order: the headline (full catalogue) first.
_DOMAIN_COLUMNS = (("hr10_full", "HR@10 (full)"), ("ndcg10_full", "NDCG@10 (full)"),
                   ("hr10_full_in_vocab", "HR@10 (full, seen targets)"),
                   ("hr10", "HR@10 (sampled)"), ("auc", "AUC"))


def _heads(num_domains: int) -> List[str]:
  """The suffixes of K domains' metrics: ``a``, ``b``, ..."""
  return list(F.domain_suffixes(num_domains))


def table_metrics(num_domains: int) -> Tuple[str, ...]:
  """The experiment tables' metrics of K domains: every test metric overall and per slice."""
  overall = tuple(f"{metric}_{head}" for head in _heads(num_domains)
                  for metric in [m for m, _ in _DOMAIN_COLUMNS] + [
                      "examples", "unseen_target_share", "full_catalogue_positives"])
  return overall + tuple(f"{name}_{slice_name}" for slice_name in metrics_lib.SLICES
                         for name in overall)


# The experiment tables of two domains: every test metric overall and per slice of
# dasl_tf.metrics.SLICES.
TABLE_METRICS = table_metrics(2)


# ----------------------------------------------------------------------------- ROC


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """The ROC curve of binary ``labels`` ranked by ``scores``; tied scores form one step.

  Args:
    labels: ``[N]`` 0/1 labels.
    scores: ``[N]`` scores, higher means more likely positive.

  Returns:
    ``(fpr, tpr)``, each ``[M]``, starting at (0, 0) and ending at (1, 1).

  Raises:
    ValueError: the labels are not all of both classes present.
  """
  labels = np.asarray(labels, dtype=np.float64).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  positives = labels.sum()
  negatives = labels.size - positives
  if positives == 0 or negatives == 0:
    raise ValueError(f"a ROC curve needs both classes; got {int(positives)} positive and "
                     f"{int(negatives)} negative labels")
  order = np.argsort(-scores, kind="stable")
  sorted_scores, sorted_labels = scores[order], labels[order]
  last_of_tie = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_labels.size - 1]
  true_positives = np.cumsum(sorted_labels)[last_of_tie]
  false_positives = (last_of_tie + 1) - true_positives
  return (np.r_[0.0, false_positives / negatives], np.r_[0.0, true_positives / positives])


def collect_predictions(model, dataset: tf.data.Dataset) -> Dict[str, np.ndarray]:
  """Labels, domains and own-domain click probabilities of every example of ``dataset``.

  Returns:
    ``{"label": [N], "domain": [N], "ctr": [N]}``.
  """
  labels, domains, ctrs = [], [], []
  for features, label in dataset:
    labels.append(label.numpy())
    domains.append(features[F.DOMAIN].numpy())
    ctrs.append(model.predict_ctr(features)["ctr"].numpy())
  return {"label": np.concatenate(labels), "domain": np.concatenate(domains),
          "ctr": np.concatenate(ctrs)}


def plot_roc(predictions: Mapping[str, np.ndarray], domain_names: Sequence[str],
             path: str) -> Dict[str, float]:
  """Plots each domain's ROC curve to ``path``; returns each domain's AUC (key = name)."""
  figure, axis = plt.subplots(figsize=(5, 5))
  aucs = {}
  for domain, name in enumerate(domain_names):
    in_domain = predictions["domain"] == domain
    labels, scores = predictions["label"][in_domain], predictions["ctr"][in_domain]
    try:
      fpr, tpr = roc_curve(labels, scores)
    except ValueError:
      continue  # a domain with one class (or no example) has no ROC curve
    aucs[name] = metrics_lib.roc_auc(labels, scores)
    axis.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.4f})")
  axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
  axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per domain")
  axis.legend(loc="lower right")
  figure.tight_layout()
  _save_png(figure, path)
  return aucs


# ----------------------------------------------------------------------------- training curves


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str,
                         num_domains: int = 2) -> None:
  """Per-head loss and AUC, training and evaluation, against the epoch (of K heads)."""
  epochs = [record["epoch"] for record in history]
  figure, axes = plt.subplots(1, 2, figsize=(10, 4))
  for axis, metric in zip(axes, ("loss", "auc")):
    for head in _heads(num_domains):
      for prefix, style in (("", "-"), ("val_", "--")):
        key = f"{prefix}{metric}_{head}"
        values = [record.get(key, np.nan) for record in history]
        if not np.all(np.isnan(values)):
          axis.plot(epochs, values, style, marker="o", label=key)
    axis.set(xlabel="epoch", title=f"{metric} per head")
    axis.legend()
  figure.tight_layout()
  _save_png(figure, path)


# ----------------------------------------------------------------------------- attention


def plot_attention(panels: Sequence[Mapping[str, np.ndarray]], domain_names: Sequence[str],
                   path: str) -> None:
  """Heatmaps of the attention heads put on the records of every domain's history.

  Args:
    panels: one mapping per domain D (A, then B, ...) with ``weights``
      ``[N, K T]``: head D's weights, for N examples whose target is in D, over
      domain A's T records, then domain B's, ...; and ``hist_a``, ``hist_b``,
      ... ``[N, T]``: the histories (padding, id 0, is drawn blank).
    domain_names: names of the K domains.
    path: PNG file to write.
  """
  rows = max(len(panel["weights"]) for panel in panels)
  histories = list(F.history_keys(len(domain_names)))
  figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 1.5 + 0.5 * rows),
                              squeeze=False)
  for axis, panel, name in zip(axes[0], panels, domain_names):
    history_length = panel[histories[0]].shape[1]
    padding = np.concatenate([panel[h] for h in histories], axis=1) == F.PAD_ID
    image = axis.imshow(np.ma.masked_array(panel["weights"], mask=padding), aspect="auto",
                        cmap="viridis", vmin=0.0)
    for d in range(1, len(histories)):
      axis.axvline(d * history_length - 0.5, color="white", linewidth=2)
    axis.set_xticks([(d + 0.5) * history_length - 0.5 for d in range(len(histories))])
    axis.set_xticklabels([f"{domain} history (old -> new)" for domain in domain_names])
    axis.set_yticks(range(len(panel["weights"])))
    axis.set_ylabel("example")
    axis.set_title(f"head {name}, targets in {name}")
    figure.colorbar(image, ax=axis)
  figure.tight_layout()
  _save_png(figure, path)


def attention_panels(model, dataset: tf.data.Dataset, per_domain: int
                     ) -> Optional[List[Dict[str, np.ndarray]]]:
  """Attention of each domain's head on examples of that domain with every history non-empty.

  Returns:
    One panel per domain for :func:`plot_attention` (from the first batch that
    has such examples of every domain), an empty list when no batch has, or
    None when the model exposes no ``attention_weights``.
  """
  if not hasattr(model, "attention_weights"):
    return None
  histories = [F.history_key(d) for d in model.domains]
  for features, _ in dataset:
    full = np.all([(features[h].numpy() != F.PAD_ID).any(axis=1) for h in histories], axis=0)
    domain = features[F.DOMAIN].numpy()
    chosen = [np.nonzero(full & (domain == d))[0][:per_domain] for d in model.domains]
    if all(c.size for c in chosen):
      panels = []
      for d, rows in zip(model.domains, chosen):
        picked = {name: tf.gather(value, rows) for name, value in features.items()}
        panels.append({"weights": np.asarray(model.attention_weights(picked)[F.domain_suffix(d)]),
                       **{h: picked[h].numpy() for h in histories}})
      return panels
  return []


# ----------------------------------------------------------------------------- the report


def write_report(model, eval_dataset: tf.data.Dataset,
                 history: Sequence[Mapping[str, float]], metrics: Mapping[str, float],
                 out_dir: str, domain_names: Sequence[str] = ("A", "B"),
                 attention_examples: int = 4) -> str:
  """Writes ``report.md`` and its plots into ``out_dir``, published whole.

  A previous ``out_dir`` is replaced only if it holds ``report.md``.

  Args:
    model: the trained model (a ``CrossDomainRanker``).
    eval_dataset: batches of ``(features, label)`` of the evaluation split.
    history: per-epoch logs (``epoch``, ``loss_a``, ``val_auc_b``, ...).
    metrics: the run's final metrics (as in ``metrics.json``).
    out_dir: the report directory.
    domain_names: display names of the K domains (A, B, ...).
    attention_examples: examples per domain shown in the attention heatmap.

  Returns:
    The path of ``report.md``.
  """
  with publish.staged_directory(out_dir, overwrite=True, marker=REPORT_FILE,
                                what="report directory") as staging:
    names = list(domain_names)
    roc_aucs = plot_roc(collect_predictions(model, eval_dataset), names,
                        os.path.join(staging, ROC_FILE))
    sections = [
        "# Evaluation report", "",
        f"Model variant: `{model.model_config.variant}`",
        "", "## Metrics on the evaluation split", "",
        "| domain | HR@10 (full catalogue) | NDCG@10 (full catalogue) | HR@10 (full, seen "
        "targets) | unseen targets | HR@10 (sampled) | NDCG@10 (sampled) | AUC "
        "| loss (best epoch) | AUC of the plotted ROC |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    heads = _heads(len(names))
    for head, name in zip(heads, names):
      cells = [_fmt(metrics.get(f"{key}_{head}")) for key in
               ("hr10_full", "ndcg10_full", "hr10_full_in_vocab")]
      cells.append(_percent(metrics.get(f"unseen_target_share_{head}")))
      cells += [_fmt(metrics.get(f"{key}_{head}")) for key in ("hr10", "ndcg10", "auc", "loss")]
      sections.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(roc_aucs.get(name))} |")
    ranked = [metrics.get(f"full_catalogue_positives_{head}") for head in heads]
    sections += [
        "", "Full catalogue: each positive's target ranked against every item of its domain "
        "with a training record that the user has not touched (in training, validation or the "
        "example's history), on a seeded sample of "
        + ", ".join(f"{'n/a' if n is None else n} ({name})" for n, name in zip(ranked, names))
        + " positives; a target unseen in training counts as a miss. Sampled: against the "
        "example's stored negatives, ties broken at random (seeded)."]
    sections += [
        "", f"Trained on {metrics.get('train_examples', 0):,} examples in "
        f"{metrics.get('train_seconds', 0.0):.1f} s ({metrics.get('epochs', '?')} epochs; "
        f"best epoch {metrics.get('best_epoch', '?')}).", "",
        "## ROC curves", "", f"![ROC per domain]({ROC_FILE})", ""]
    if history:
      plot_training_curves(history, os.path.join(staging, CURVES_FILE), len(names))
      sections += ["## Training curves", "", f"![training curves]({CURVES_FILE})", ""]
    panels = attention_panels(model, eval_dataset, attention_examples)
    sections += ["## Dual Attention", ""]
    if panels is None:
      sections.append("This model exposes no attention weights.")
    elif not panels:
      sections.append("No evaluation batch has examples of every domain whose histories "
                      "are all non-empty.")
    else:
      plot_attention(panels, names, os.path.join(staging, ATTENTION_FILE))
      sections += [
          "Weights each head put on the records of every history (columns: domain A's "
          "history, then domain B's, ...; blank = padding) for evaluation examples of its own "
          "domain (rows), with the example's target item as the query.", "",
          f"![attention]({ATTENTION_FILE})"]
    with filesystems.open_file(os.path.join(staging, REPORT_FILE), "w") as f:
      f.write("\n".join(sections) + "\n")
  return os.path.join(out_dir, REPORT_FILE)


def _fmt(value: Optional[float]) -> str:
  return "n/a" if value is None else f"{value:.4f}"


def _percent(value: Optional[float]) -> str:
  return "n/a" if value is None or np.isnan(value) else f"{value:.1%}"


def _count(value: float) -> str:
  return "n/a" if np.isnan(value) else f"{value:.0f}"


# ----------------------------------------------------------------------------- experiment tables


def load_experiment_runs(experiment_dirs: Sequence[str]) -> List[Mapping[str, object]]:
  """The runs (``variant``, ``metrics``, ...) of ``dasl-experiment`` outputs, pooled in order.

  Each directory's ``results.json`` lists its runs; variants of one table run as
  separate experiments (on the same data) pool into one table this way.

  Raises:
    errors.DataError: a ``results.json`` is not valid JSON or not a list of runs.
  """
  runs = []
  for directory in experiment_dirs:
    path = os.path.join(directory, "results.json")
    results = json_io.load(path)
    if not isinstance(results, list) or not all(isinstance(run, dict) for run in results):
      raise errors.DataError(f"{path}: expected a list of runs (a results.json of "
                             "dasl-experiment)")
    runs.extend(results)
  return runs


def summarize_runs(runs: Sequence[Mapping[str, object]],
                   metric_names: Sequence[str] = TABLE_METRICS
                   ) -> Dict[str, Dict[str, Dict[str, float]]]:
  """Mean and sample standard deviation of each metric per variant.

  Args:
    runs: one mapping per run with ``variant`` and ``metrics`` (a metrics.json dict).
    metric_names: metrics to aggregate.

  Returns:
    ``{variant: {metric: {"mean", "std", "n"}}}`` with variants in first-seen order;
    ``std`` is 0 for a single run.
  """
  grouped: Dict[str, List[Mapping[str, float]]] = {}
  for run in runs:
    grouped.setdefault(str(run["variant"]), []).append(run["metrics"])
  summary = {}
  for variant, metrics in grouped.items():
    summary[variant] = {}
    for name in metric_names:
      values = np.array([m.get(name, np.nan) for m in metrics], dtype=np.float64)
      summary[variant][name] = {
          "mean": float(values.mean()),
          "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
          "n": int(values.size)}
  return summary


def experiment_table_markdown(summary: Mapping[str, Mapping[str, Mapping[str, float]]],
                              domain_names: Sequence[str] = ("A", "B"),
                              title: str = "", slice_name: str = "") -> str:
  """A Markdown table (rows = variants; per domain, mean +- std of the full-catalogue
  HR@10 and NDCG@10, the full-catalogue HR@10 of seen targets, the sampled HR@10 and the AUC).

  Args:
    summary: :func:`summarize_runs` of the runs.
    domain_names: the K domains' names, for the column headers (the summary
      holds the metrics of as many domains: :func:`table_metrics`).
    title: the caption.
    slice_name: a slice of :data:`dasl_tf.metrics.SLICES` (its examples
      only), or "" for every test example.

  The best mean of each column is in bold; a metric the runs lack (a slice
  without examples, runs without the full-catalogue figures) shows n/a. Below
  the table: the test examples, the share of positives whose target was unseen
  in training and the positives ranked against the full catalogue, per domain.
  """
  suffix = f"_{slice_name}" if slice_name else ""
  columns = [(f"{metric}_{head}{suffix}", f"{domain} {label}")
             for head, domain in zip(_heads(len(domain_names)), domain_names)
             for metric, label in _DOMAIN_COLUMNS]
  best = {metric: np.nanmax([row[metric]["mean"] for row in summary.values()] + [-np.inf])
          for metric, _ in columns}
  lines = [f"**{title}**", ""] if title else []
  heads = _heads(len(domain_names))
  examples = [summary[next(iter(summary))][f"examples_{d}{suffix}"]["mean"] for d in heads]
  lines.append("| variant | runs | " + " | ".join(label for _, label in columns) + " |")
  lines.append("|---|---|" + "---|" * len(columns))
  for variant, row in summary.items():
    cells = []
    for metric, _ in columns:
      mean, std = row[metric]["mean"], row[metric]["std"]
      cell = "n/a" if np.isnan(mean) else f"{mean:.4f} ± {std:.4f}"
      cells.append(f"**{cell}**" if mean == best[metric] else cell)
    runs = row[columns[0][0]]["n"]
    lines.append(f"| {variant} | {runs} | " + " | ".join(cells) + " |")
  lines.append("")
  lines.append("Test examples: " + ", ".join(
      f"{n:.0f} ({name})" for n, name in zip(examples, domain_names)) + ".")
  first = summary[next(iter(summary))]
  unseen = [first[f"unseen_target_share_{d}{suffix}"]["mean"] for d in heads]
  ranked = [first[f"full_catalogue_positives_{d}{suffix}"]["mean"] for d in heads]
  if not np.all(np.isnan(unseen + ranked)):
    lines.append(
        "Positives whose target was unseen in training (full-catalogue misses by rule): "
        + ", ".join(f"{_percent(u)} ({name})" for u, name in zip(unseen, domain_names))
        + "; ranked against the full catalogue: "
        + ", ".join(f"{_count(r)} ({name})" for r, name in zip(ranked, domain_names))
        + " per run.")
  return "\n".join(lines) + "\n"


def experiment_tables_markdown(summary: Mapping[str, Mapping[str, Mapping[str, float]]],
                               domain_names: Sequence[str] = ("A", "B"),
                               title: str = "") -> str:
  """The overall table, then one table per slice of :data:`dasl_tf.metrics.SLICES`."""
  sections = [experiment_table_markdown(summary, domain_names, title)]
  for slice_name in metrics_lib.SLICES:
    caption = f"{title + ': ' if title else ''}slice {slice_name}"
    sections.append(experiment_table_markdown(summary, domain_names, caption, slice_name))
  return "\n".join(sections)


def _save_png(figure, path: str) -> None:
  """Writes a figure as PNG to a local or remote path and closes it."""
  png = io.BytesIO()
  figure.savefig(png, format="png", dpi=100)
  plt.close(figure)
  with filesystems.open_file(path, "wb") as f:
    f.write(png.getvalue())
