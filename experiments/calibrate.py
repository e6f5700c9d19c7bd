"""Calibrate the hardware models: validate against published numbers, fit, profile this machine.

    python -m experiments.calibrate                         # mode=validate on conf/hw
    python -m experiments.calibrate devices=calibrated      # validate calibration/*-calibrated
    python -m experiments.calibrate mode=fit                # fit; calibration/<hw>-calibrated.yaml
    python -m experiments.calibrate mode=fit fit.install=true   # ... and update conf/hw in place
    python -m experiments.calibrate mode=profile profile_run.out=calibration/cpu_profile.csv
    python -m experiments.calibrate mode=fit profile=calibration/cpu_profile.csv hw=cpu

Writes into the Hydra run folder:

* ``validate``: ``validation.csv`` (``id,predicted,published,rel_error,reason``; the reason says
  why a row was skipped), ``summary.csv``/``summary.md`` (median and p90 relative error per
  category) and ``validation.png``.
* ``fit``: the same after fitting, plus ``fit.json`` (parameters, training ids),
  ``holdout.csv`` (leave-out experiments: error on devices/models not fitted on) and
  ``hw/<name>-calibrated.yaml`` for every device (also written to ``fit.out_dir``).
* ``profile``: ``profile.csv`` (see :data:`hwmodels.calibration.PROFILE_COLUMNS`) and
  ``microbench.json``.
* ``fit``/``validate`` with ``profile=CSV hw=<device>``: ``profile_validation.csv``
  (predicted vs measured per row, with its train/test split), ``summary.md``,
  ``profile.png`` and, for ``fit``, ``hw/<device>-calibrated.yaml``.

Bad input (unknown mode, missing or malformed CSV) is reported as one line, exit status 2.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from experiments.common import CONF_DIR, UserError, git_revision, hydra_app, run_dir, write_atomic
from hwmodels import calibration as cal
from hwmodels.specs import CALIBRATED_HW_DIR, DeviceSpec, load_device

REPO = Path(__file__).resolve().parent.parent
HW_DIR = CONF_DIR / "hw"
MODES = ("validate", "fit", "profile")
GPULET_PREFIX = "gpulet:"
"""``profile=gpulet:PATH``: the gpulet measurements from a checkout or mirror at PATH, with
their fixed split (:mod:`hwmodels.calibration.gpulet`)."""
FAMILY = {"resnet50": "resnet50", "bert-99": "bert", "bert-large": "bert", "dlrm-99": "dlrm",
          "dlrm (Criteo)": "dlrm"}


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def default_targets() -> Path | None:
    """The committed ``calibration/published_targets.csv`` (every row of the shared copy plus
    the cited rows added since), else ``../shared/calibration/published_targets.csv``."""
    for p in (REPO / "calibration" / "published_targets.csv",
              REPO.parent / "shared" / "calibration" / "published_targets.csv"):
        if p.is_file():
            return p
    return None


def load_targets(path: str | None) -> tuple[Path, list[cal.Target]]:
    """The targets CSV named by ``targets=`` (or the default).

    Raises:
        UserError: missing or malformed file.
    """
    if path is None:
        found = default_targets()
        if found is None:
            raise UserError("targets: no targets CSV given and none found at "
                            "../shared/calibration/ or calibration/; pass targets=FILE")
        p = found
    else:
        p = Path(path)
    if not p.is_file():
        raise UserError(f"targets: {p}: no such file")
    try:
        return p, cal.read_targets(p)
    except UnicodeDecodeError:
        raise UserError(f"targets: {p}: not UTF-8 text (a binary file?)") from None
    except ValueError as exc:
        raise UserError(f"targets: {exc}") from None


def device_names() -> list[str]:
    """The ``conf/hw`` device names."""
    return sorted(p.stem for p in HW_DIR.glob("*.yaml"))


def load_devices(which: str) -> dict[str, DeviceSpec]:
    """Every ``conf/hw`` device, or its calibrated version where one exists.

    Raises:
        UserError: ``which`` is not ``conf``/``calibrated``, or a spec is malformed.
    """
    if which not in ("conf", "calibrated"):
        raise UserError(f"devices: must be 'conf' or 'calibrated', got '{which}'")
    out = {}
    for name in device_names():
        path = HW_DIR / f"{name}.yaml"
        cal_path = CALIBRATED_HW_DIR / f"{name}-calibrated.yaml"
        if which == "calibrated" and cal_path.is_file():
            path = cal_path
        try:
            out[name] = load_device(str(path))
        except ValueError as exc:
            raise UserError(f"hw: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def validation_csv(results: Sequence[cal.Result]) -> str:
    """``id,predicted,published,rel_error,reason`` rows."""
    lines = ["id,predicted,published,rel_error,reason"]
    for r in results:
        err = "" if not math.isfinite(r.rel_error) else f"{r.rel_error:.4f}"
        lines.append(",".join(_csv_field(x.replace('"', "'")) for x in
                              (r.id, r.predicted, r.published, err, r.reason)))
    return "\n".join(lines) + "\n"


def summary_rows(results: Sequence[cal.Result]) -> list[cal.Summary]:
    """Per category, plus the performance population of the calibration goal."""
    rows = cal.summarize(results)
    perf = [r for r in results if cal.is_performance(r)]
    rows += cal.summarize(perf, key=lambda r: "performance (all)")
    gpu = [r for r in perf if not r.device.startswith("xeon")]
    rows += cal.summarize(gpu, key=lambda r: "performance (GPUs)")
    return rows


def summary_table(rows: Sequence[cal.Summary]) -> str:
    """A Markdown table of summaries."""
    out = ["| group | predicted | skipped | median rel. error | p90 | max |",
           "|---|---:|---:|---:|---:|---:|"]
    for s in rows:
        def pct(v: float) -> str:
            return "-" if not math.isfinite(v) else f"{100 * v:.1f}%"
        out.append(f"| {s.group} | {s.n} | {s.skipped} | {pct(s.median)} | {pct(s.p90)} | "
                   f"{pct(s.max)} |")
    return "\n".join(out) + "\n"


def summary_csv(rows: Sequence[cal.Summary]) -> str:
    lines = ["group,n,skipped,median,p90,max"]
    for s in rows:
        lines.append(f"{_csv_field(s.group)},{s.n},{s.skipped},{s.median:.4f},{s.p90:.4f},"
                     f"{s.max:.4f}")
    return "\n".join(lines) + "\n"


def plot_validation(results: Sequence[cal.Result], path: Path, title: str) -> None:
    """Predicted vs published (performance rows) and median/p90 error per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    perf = [r for r in results if cal.is_performance(r)]
    cats = sorted({r.category for r in perf})
    for c in cats:
        xs, ys = [], []
        for r in perf:
            if r.category != c:
                continue
            pub = cal.parse_published(r.published) or []
            pred = [float(v) for v in r.predicted.split(" / ")]
            for b, v in zip(pub, pred, strict=False):
                xs.append(b.lo)
                ys.append(v)
        ax1.scatter(xs, ys, label=c, s=18)
    if perf:
        lo, hi = ax1.get_xlim()
        grid = np.geomspace(max(lo, 1e-3), hi, 10)
        ax1.plot(grid, grid, "k-", lw=0.8)
        for f in (0.9, 1.1):
            ax1.plot(grid, grid * f, "k:", lw=0.6)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
    ax1.set_xlabel("published")
    ax1.set_ylabel("predicted")
    ax1.set_title("throughput / latency targets (dotted: +-10%)")
    ax1.legend(fontsize=8)
    rows = [s for s in cal.summarize(results) if s.n > 0]
    idx = np.arange(len(rows))
    ax2.bar(idx - 0.2, [100 * s.median for s in rows], 0.4, label="median")
    ax2.bar(idx + 0.2, [min(100 * s.p90, 100.0) for s in rows], 0.4, label="p90 (capped at 100)")
    ax2.set_xticks(idx, [s.group for s in rows], rotation=45, ha="right", fontsize=8)
    ax2.set_ylabel("relative error, %")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _compress_ids(ids: Sequence[str]) -> str:
    """``T001,T002,T003,T013`` -> ``T001-T003, T013``."""
    nums = sorted({int(m.group(1)) for i in ids if (m := re.fullmatch(r"T(\d+)", i))})
    others = sorted(i for i in ids if not re.fullmatch(r"T\d+", i))
    parts = []
    start = prev = None
    for n in [*nums, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(f"T{start:03d}" if start == prev else f"T{start:03d}-T{prev:03d}")
        start = prev = n
    return ", ".join([*parts, *others])


def _num(v: float) -> str:
    """Up to 6 significant digits (published values keep theirs; fits are not that exact)."""
    return f"{float(f'{v:.6g}'):.10g}"


def spec_yaml(spec: DeviceSpec, header: str) -> str:
    """A device YAML (as in ``conf/hw``) for ``spec``, with ``header`` comment lines."""
    data = spec.to_mapping()
    data = {"name": data.pop("name"), "kind": data.pop("kind"), **data}
    lines = [header.rstrip("\n")] if header.strip() else []
    for key, value in data.items():
        if key == "sources":
            continue
        if key == "stacks":
            if value:
                lines.append("stacks:")
                for stack, kv in value.items():
                    inner = ", ".join(f"{k}: {_num(v)}" for k, v in kv.items())
                    lines.append(f"  {stack}: {{{inner}}}")
            continue
        if isinstance(value, Mapping):
            if value:
                inner = ", ".join(f"{k}: {_num(v)}" for k, v in value.items())
                lines.append(f"{key}: {{{inner}}}")
            continue
        if isinstance(value, list):
            if value:
                lines.append(f"{key}: {json.dumps(value)}")
            continue
        if value is None:
            lines.append(f"{key}: null")
        elif isinstance(value, str):
            lines.append(f"{key}: {yaml.safe_dump(value, default_style=None).splitlines()[0]}")
        elif isinstance(value, bool):
            lines.append(f"{key}: {str(value).lower()}")
        elif isinstance(value, int):
            lines.append(f"{key}: {value}")
        else:
            lines.append(f"{key}: {_num(float(value))}")
    lines.append("sources:")
    for k, v in data["sources"].items():
        lines.append(f"  {k}: {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def _header(name: str) -> str:
    path = HW_DIR / f"{name}.yaml"
    head = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            if "Fitted parameters:" not in line and "fitted by" not in line:
                head.append(line)
    return "\n".join(head)


def _write_specs(specs: Mapping[str, DeviceSpec], names: Sequence[str], out: Path,
                 out_dir: str | None, install: bool, note: str,
                 header_of: str | None = None) -> list[Path]:
    written: list[Path] = []
    text_by_name: dict[str, str] = {}
    for name in names:
        header = _header(header_of or name) + f"\n# {note}"
        text = text_by_name[name] = spec_yaml(specs[name], header)
        load_check = yaml.safe_load(text)
        DeviceSpec.from_mapping(load_check, origin=f"{name}-calibrated.yaml")
        write_atomic(out / "hw" / f"{name}-calibrated.yaml", text)
        if out_dir:
            target = (REPO / out_dir) if not Path(out_dir).is_absolute() else Path(out_dir)
            written.append(target / f"{name}-calibrated.yaml")
        if install:
            written.append(HW_DIR / f"{name}.yaml")
    for path in written:
        write_atomic(path, text_by_name[path.name.removesuffix(".yaml").removesuffix(
            "-calibrated")])
        path.chmod(0o644)  # committed files: readable like the rest of the checkout
    return written


# ---------------------------------------------------------------------------------------------
# validate / fit on published targets
# ---------------------------------------------------------------------------------------------


def run_validate(cfg: DictConfig, out: Path) -> list[cal.Result]:
    """``mode=validate``: predict every target with the selected specs."""
    path, targets = load_targets(cfg.targets)
    devices = load_devices(str(cfg.devices))
    results = cal.validate(targets, devices)
    _report(results, out, f"validate {path.name} against {cfg.devices} specs")
    return results


def _report(results: Sequence[cal.Result], out: Path, title: str, extra: str = "") -> None:
    rows = summary_rows(results)
    write_atomic(out / "validation.csv", validation_csv(results))
    write_atomic(out / "summary.csv", summary_csv(rows))
    table = summary_table(rows)
    write_atomic(out / "summary.md", f"# {title}\n\n{table}\n{extra}")
    plot_validation(results, out / "validation.png", title)
    print(table + extra)
    print(f"wrote {out / 'validation.csv'}, summary.md, validation.png")


def _split_ids(results: Sequence[cal.Result], devices: Sequence[str], models: Sequence[str],
               base: set[str], ids: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Rows held out: on ``devices``, of ``models`` (a name of :data:`FAMILY` holds out its
    whole family: ``resnet50``, ``bert``, ``dlrm``; other names only their own rows), or
    named in ``ids``."""
    names = set(models)
    fam = {FAMILY.get(m, m) for m in models if m in FAMILY.values()}
    test = [r.id for r in results if r.id in base and (
        r.device in devices or r.model in names or FAMILY.get(r.model, "") in fam
        or r.id in ids)]
    train = [i for i in sorted(base) if i not in set(test)]
    return train, test


def _stats(results: Sequence[cal.Result], ids: set[str]) -> tuple[int, float, float]:
    errs = [r.rel_error for r in results if r.id in ids and cal.is_performance(r)]
    if not errs:
        return 0, math.nan, math.nan
    return len(errs), float(np.median(errs)), float(np.percentile(errs, 90))


def run_fit(cfg: DictConfig, out: Path) -> cal.FitResult:
    """``mode=fit`` on published targets (see the module docstring)."""
    path, targets = load_targets(cfg.targets)
    devices = load_devices("conf")
    f = cfg.fit
    per_device = [str(x) for x in f.per_device]
    for name in per_device:
        try:
            cal.param_bounds(name)
        except ValueError as exc:
            raise UserError(f"fit.per_device: {exc}") from None
    before = cal.validate(targets, devices)
    fittable = {r.id for r, t in zip(before, targets, strict=True)
                if not r.skipped and isinstance(p := cal.plan_target(t, devices), cal.Plan)
                and p.fittable}
    excluded = {str(i) for i in f.exclude_ids}
    unknown = sorted(excluded - {t.id for t in targets})
    if unknown:
        raise UserError(f"fit.exclude_ids: unknown target id(s) {unknown}")
    base = fittable - excluded
    kwargs: dict[str, Any] = {"per_device": per_device,
                              "prior_weight": float(f.prior_weight),
                              "max_nfev": int(f.max_nfev)}
    # Leave-out experiments.
    lines = ["split,held_out_devices,held_out_models,n_train,train_median,train_p90,n_test,"
             "test_median,test_p90,test_gpu_median,held_out_ids"]
    md = ["| held out | fitted rows | median | p90 | held-out rows | median | p90 |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    holdout = OmegaConf.to_container(f.holdout, resolve=True) or {}
    assert isinstance(holdout, dict)
    for key, spec in holdout.items():
        split = str(key)
        if not isinstance(spec, dict) or set(spec) - {"devices", "models", "ids"}:
            raise UserError(f"fit.holdout.{split}: expected "
                            f"{{devices: [...], models: [...], ids: [...]}}")
        hd = [str(x) for x in spec.get("devices") or []]
        hm = [str(x) for x in spec.get("models") or []]
        hi = [str(x) for x in spec.get("ids") or []]
        bad = sorted(set(hd) - set(devices))
        if bad:
            raise UserError(f"fit.holdout.{split}.devices: unknown device(s) {bad}")
        bad = sorted(set(hi) - {t.id for t in targets})
        if bad:
            raise UserError(f"fit.holdout.{split}.ids: unknown target id(s) {bad}")
        train, test = _split_ids(before, hd, hm, base, hi)
        if not train or not test:
            raise UserError(f"fit.holdout.{split}: leaves {len(train)} rows to fit and "
                            f"{len(test)} to test")
        res = _fit(targets, devices, train, kwargs)
        after = cal.validate(targets, res.devices)
        n_tr, m_tr, p_tr = _stats(after, set(train))
        n_te, m_te, p_te = _stats(after, set(test))
        _, m_gpu, _ = _stats([r for r in after if not r.device.startswith("xeon")], set(test))
        lines.append(f"{split},{' '.join(hd)},{' '.join(hm)},{n_tr},{m_tr:.4f},{p_tr:.4f},"
                     f"{n_te},{m_te:.4f},{p_te:.4f},{m_gpu:.4f},{' '.join(hi)}")
        what = ", ".join([*hd, *hm, *hi])
        md.append(f"| {split}: {what} | {n_tr} | {100 * m_tr:.1f}% | {100 * p_tr:.1f}% | {n_te} | "
                  f"{100 * m_te:.1f}% | {100 * p_te:.1f}% |")
        print(f"holdout {split}: fitted {n_tr} rows (median {m_tr:.1%}), held out {n_te} "
              f"(median {m_te:.1%}, p90 {p_te:.1%})")
    write_atomic(out / "holdout.csv", "\n".join(lines) + "\n")
    # The fit that the calibrated specs come from.
    res = _fit(targets, devices, sorted(base), kwargs)
    after = cal.validate(targets, res.devices)
    when = datetime.date.today().isoformat()
    ids_by_device: dict[str, list[str]] = {}
    plans = {t.id: cal.plan_target(t, devices) for t in targets}
    for i in res.train_ids:
        plan = plans[i]
        if isinstance(plan, cal.Plan) and plan.device:
            ids_by_device.setdefault(plan.device, []).append(i)
    specs = _with_sources(res, _compress_ids(res.train_ids),
                          {k: _compress_ids(v) for k, v in ids_by_device.items()})
    names = [n for n, d in devices.items() if d.kind == "gpu" or n in res.fitted_devices]
    note = (f"Fitted parameters: experiments.calibrate mode=fit on {path.name} "
            f"({when}, {git_revision()[:12]}); see calibration/FIDELITY.md.")
    written = _write_specs(specs, names, out, f.out_dir, bool(f.install), note)
    write_atomic(out / "fit.json", json.dumps({
        "targets": os.path.relpath(path, REPO), "train_ids": res.train_ids, "params": res.params,
        "fitted_devices": res.fitted_devices, "cost": res.cost, "success": res.success,
        "message": res.message, "per_device": per_device,
        "prior_weight": float(f.prior_weight)}, indent=2) + "\n")
    extra = ("\n## Leave-out experiments (error on rows not fitted on)\n\n" + "\n".join(md)
             + "\n\n## Fitted parameters\n\n" + "\n".join(
                 f"- `{k}` = {_num(v)}" for k, v in res.params.items()) + "\n")
    _report(after, out, f"fit on {len(res.train_ids)} targets of {path.name}", extra)
    for w in written:
        print(f"wrote {w}")
    return res


def _fit(targets: Sequence[cal.Target], devices: Mapping[str, DeviceSpec], train: Sequence[str],
         kwargs: Mapping[str, Any]) -> cal.FitResult:
    try:
        return cal.fit_targets(targets, devices, train, **kwargs)
    except ValueError as exc:
        raise UserError(f"fit: {exc}") from None


def _with_sources(res: cal.FitResult, ids_text: str, ids_by_device: Mapping[str, str]
                  ) -> dict[str, DeviceSpec]:
    """Fitted specs whose ``sources`` name the targets each fitted field came from."""
    out = dict(res.devices)
    by_dev: dict[str, list[str]] = {}
    for label in res.params:
        scope, name = label.split(".", 1)
        by_dev.setdefault(scope, []).append(name)
    fitted_by = f"fitted by experiments.calibrate mode=fit on {ids_text}"
    for dev, spec in out.items():
        if spec.kind == "cpu" and dev not in res.fitted_devices:
            continue
        src = dict(spec.sources)
        shared = sorted({n.split(".")[0] for n in by_dev.get("global", [])
                         if spec.kind == "gpu" or n.startswith("stacks.")})
        for field in shared:
            src[field] = f"{fitted_by} (shared by every GPU)"
        own = sorted({n.split(".")[0] for n in by_dev.get(dev, [])})
        for field in own:
            src[field] = (f"fitted by experiments.calibrate mode=fit on this device's targets "
                          f"{ids_by_device.get(dev, '')}")
        if dev not in res.fitted_devices and spec.kind == "gpu":
            src["eff_compute_max"] = ("geometric mean of the per-GPU fits (no targets for this "
                                      f"device); {fitted_by}")
            if spec.mig is not None:
                src["interference"] = ("mig: geometric mean of the fitted MIG GPUs; "
                                       + fitted_by)
        out[dev] = spec.replace(sources=src)
    return out


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def _hw_choice() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    choice = HydraConfig.get().runtime.choices.get("hw")
    return None if choice in (None, "null") else str(choice)


def _base(model: str) -> str:
    return model.partition("@")[0]


def run_profile_check(cfg: DictConfig, out: Path, fit: bool) -> None:
    """``mode=fit``/``validate`` with ``profile=CSV hw=<device>``."""
    name = _hw_choice()
    if cfg.get("hw") is None or name is None:
        raise UserError("hw: profile=... needs the measured device, e.g. hw=cpu")
    try:
        device = DeviceSpec.from_mapping(OmegaConf.to_container(cfg.hw, resolve=True),  # type: ignore[arg-type]
                                         origin=f"hw={name}")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    source = str(cfg.profile)
    gpulet = source.startswith(GPULET_PREFIX)
    path = Path(source.removeprefix(GPULET_PREFIX))
    if not path.exists() or (not gpulet and not path.is_file()):
        raise UserError(f"profile: {path}: no such file")
    try:
        rows = cal.read_gpulet(path) if gpulet else cal.read_profile(path)
    except UnicodeDecodeError:
        raise UserError(f"profile: {path}: not UTF-8 text (a binary file?)") from None
    except ValueError as exc:
        raise UserError(f"profile: {exc}") from None
    if gpulet:  # a copy for the run folder only: the data's licence is not stated
        write_atomic(out / "profile.csv", cal.write_profile("", rows))
    label = "gpulet (github.com/0909wlgur/Gpulet, fixed split)" if gpulet else path.name
    precision = "fp32" if device.kind == "cpu" else "fp16"
    held = {str(m) for m in cfg.fit.profile_holdout_models}
    every = int(cfg.fit.profile_holdout_every)
    if every < 0:
        raise UserError(f"fit.profile_holdout_every: must be >= 0, got {every}")
    if gpulet:
        train = np.array([cal.gpulet_is_training(r) for r in rows])
    else:
        train = np.array([_base(r.model) not in held and _base(r.corunner_model) not in held
                          and not (every and (i + 1) % every == 0)
                          for i, r in enumerate(rows)])
    out_name = str(cfg.fit.get("profile_spec") or name)
    if fit:
        if not train.any():
            raise UserError("fit.profile_holdout_models: holds out every profile row")
        try:
            result = cal.fit_profile(rows, device, train, precision,
                                     prior_weight=float(cfg.fit.prior_weight))
        except ValueError as exc:
            raise UserError(f"fit: {exc}") from None
        device, pred = result.device, result.predicted_ms
        src = dict(device.sources)
        what = ", ".join([*(f"rows whose index is a multiple of {every}" for _ in [0] if every),
                          *(f"{m} rows" for m in sorted(held))]) or "none"
        if gpulet:
            what = cal.GPULET_HELD_OUT
        text = (f"fitted by experiments.calibrate mode=fit on {label} "
                f"({int(train.sum())} of {len(rows)} rows; held out: {what})")
        for k in result.params:
            src[k.split(".")[0]] = text
        device = device.replace(sources=src)
        note = (f"Fitted parameters: experiments.calibrate mode=fit profile={label} "
                f"({datetime.date.today().isoformat()}, {git_revision()[:12]}).")
        written = _write_specs({out_name: device}, [out_name], out, cfg.fit.out_dir,
                               bool(cfg.fit.install) and out_name == name, note,
                               header_of=name)
        for p in written:
            print(f"wrote {p}")
        params = "\n".join(f"- `{k}` = {_num(v)}" for k, v in result.params.items())
    else:
        try:
            pred = cal.predict_profile(rows, device, precision)
        except ValueError as exc:
            raise UserError(f"profile: {exc}") from None
        params = ""
    meas = np.array([r.latency_ms for r in rows])
    err = np.abs(pred - meas) / meas
    lines = ["model,batch,share,corunner_model,corunner_batch,measured_ms,predicted_ms,"
             "rel_error,split"]
    for r, p, e, t in zip(rows, pred, err, train, strict=True):
        lines.append(f"{r.model},{r.batch},{r.share:g},{r.corunner_model},"
                     f"{r.corunner_batch if r.colocated else ''},{r.latency_ms:.3f},{p:.3f},"
                     f"{e:.4f},{'train' if t else 'test'}")
    write_atomic(out / "profile_validation.csv", "\n".join(lines) + "\n")
    table = profile_table(rows, err, train)
    title = f"{'fit' if fit else 'validate'} {name} on {label}"
    md = f"# {title}\n\n{table}\n"
    if any(r.colocated for r in rows):
        f_pred = cal.predicted_slowdowns(rows, device, precision)
        md += "\n## Co-located rows\n\n" + colocation_table(rows, pred, f_pred, train) + "\n"
    md += "\n## Solo rows by model\n\n" + model_table(rows, err, train) + "\n"
    md += f"\n## Fitted parameters\n\n{params}\n" if params else ""
    write_atomic(out / "summary.md", md)
    plot_profile(rows, meas, pred, train, out / "profile.png", title)
    print(md)


def colocation_table(rows: Sequence[cal.ProfileRow], pred_ms: np.ndarray, f_pred: np.ndarray,
                     train: np.ndarray) -> str:
    """Co-located rows, fitted and held out apart: the error of the co-located latency and of
    the slowdown (over the measured solo row of the same model, batch and share), and the
    Spearman rank correlation of predicted and measured slowdowns."""
    stats = cal.colocation_stats(rows, pred_ms, f_pred, train)
    out = ["| co-located rows | n | latency median err. | latency p90 | slowdown median err. | "
           "slowdown p90 | Spearman (slowdown) | mean slowdown measured / predicted |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, st in stats.items():
        out.append(f"| {label} | {st.n} | {100 * st.latency_median:.1f}% | "
                   f"{100 * st.latency_p90:.1f}% | {100 * st.slowdown_median:.1f}% | "
                   f"{100 * st.slowdown_p90:.1f}% | {st.spearman:.2f} | "
                   f"{st.measured_mean:.3f} / {st.predicted_mean:.3f} |")
    return "\n".join(out) + "\n"


def model_table(rows: Sequence[cal.ProfileRow], err: np.ndarray, train: np.ndarray) -> str:
    """Median and p90 error of the solo rows per measured model (and its split)."""
    out = ["| model | split | n | median rel. error | p90 |", "|---|---|---:|---:|---:|"]
    models = sorted({r.model for r in rows if not r.colocated})
    for m in models:
        mask = np.array([r.model == m and not r.colocated for r in rows])
        split = {"train" if t else "held out" for t in train[mask]}
        e = err[mask]
        out.append(f"| {m} | {', '.join(sorted(split))} | {int(mask.sum())} | "
                   f"{100 * np.median(e):.1f}% | {100 * np.percentile(e, 90):.1f}% |")
    solo = np.array([not r.colocated for r in rows])
    for label, mask in [("all models, fitted", solo & train), ("all models, held out",
                                                              solo & ~train)]:
        if mask.any():
            med = np.median([np.median(err[mask & np.array([r.model == m for r in rows])])
                             for m in models if (mask & np.array([r.model == m
                                                                  for r in rows])).any()])
            out.append(f"| {label} (median of the per-model medians) | | {int(mask.sum())} "
                       f"| {100 * med:.1f}% | |")
    return "\n".join(out) + "\n"


def profile_table(rows: Sequence[cal.ProfileRow], err: np.ndarray, train: np.ndarray) -> str:
    """Median/p90 error by split (train/test) and by solo/co-located."""
    coloc = np.array([r.colocated for r in rows])
    out = ["| rows | n | median rel. error | p90 | max |", "|---|---:|---:|---:|---:|"]
    for label, mask in [("fitted, alone", train & ~coloc), ("fitted, co-located", train & coloc),
                        ("held out, alone", ~train & ~coloc),
                        ("held out, co-located", ~train & coloc),
                        ("all held out", ~train), ("all", np.ones_like(train))]:
        if mask.any():
            e = err[mask]
            out.append(f"| {label} | {int(mask.sum())} | {100 * np.median(e):.1f}% | "
                       f"{100 * np.percentile(e, 90):.1f}% | {100 * e.max():.1f}% |")
    return "\n".join(out) + "\n"


def plot_profile(rows: Sequence[cal.ProfileRow], meas: np.ndarray, pred: np.ndarray,
                 train: np.ndarray, path: Path, title: str) -> None:
    """Predicted vs measured latency, by split and co-location."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    coloc = np.array([r.colocated for r in rows])
    for mask, label, marker in [(train & ~coloc, "fitted, alone", "o"),
                                (train & coloc, "fitted, co-located", "s"),
                                (~train & ~coloc, "held out, alone", "^"),
                                (~train & coloc, "held out, co-located", "D")]:
        if mask.any():
            ax.scatter(meas[mask], pred[mask], label=label, marker=marker, s=22)
    grid = np.geomspace(max(meas.min() * 0.8, 1e-3), meas.max() * 1.2, 10)
    ax.plot(grid, grid, "k-", lw=0.8)
    ax.plot(grid, grid * 1.15, "k:", lw=0.6)
    ax.plot(grid, grid / 1.15, "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("measured latency, ms")
    ax.set_ylabel("predicted latency, ms")
    ax.set_title(title + " (dotted: +-15%)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_profile(cfg: DictConfig, out: Path) -> None:
    """``mode=profile``: measure the configured models on this machine."""
    from experiments import profiling_torch as pt

    p = cfg.profile_run
    device = str(p.device)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"profile_run.device: must be auto, cpu or cuda, got '{device}'")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("profile_run.device: cuda requested but torch sees no CUDA device")
    colocation = str(p.get("colocation", "processes"))
    if colocation not in pt.COLOCATION or (colocation == "streams" and device != "cuda"):
        raise UserError(f"profile_run.colocation: '{colocation}' needs one of "
                        f"{', '.join(pt.COLOCATION)} (streams: on CUDA only)")
    batches = {str(k): tuple(int(b) for b in v) for k, v in p.batches.items()}
    models = tuple(str(m) for m in p.models)
    pairs = tuple((str(a), int(ab), str(b), int(bb)) for a, ab, b, bb in p.pairs)
    for spec in {*models, *(x for a, _, b, _ in pairs for x in (a, b))}:
        try:
            cal.parse_model(spec)
        except ValueError as exc:
            raise UserError(f"profile_run.models: {exc}") from None
        if spec.partition("@")[0] not in pt.BUILDERS:
            raise UserError(f"profile_run.models: no torch builder for '{spec}'; have: "
                            f"{', '.join(pt.BUILDERS)}")
    plan = pt.ProfilePlan(models, batches, tuple(float(s) for s in p.shares), pairs,
                          tuple(float(s) for s in p.colocated_shares), int(p.repeats),
                          float(p.min_time_s), int(p.passes))
    before = pt.microbenchmarks()
    rows = pt.run_profile(plan, device, colocation=colocation)
    text = cal.write_profile("", rows)
    write_atomic(out / "profile.csv", text)
    bench = {"device": device, "before": before, "after": pt.microbenchmarks()}
    write_atomic(out / "microbench.json", json.dumps(bench, indent=2) + "\n")
    if p.out:
        write_atomic(Path(str(p.out)), text)
        print(f"wrote {p.out}")
    print(f"wrote {out / 'profile.csv'} ({len(rows)} rows)")


def startup(cfg: DictConfig, _overrides: list[str]) -> None:
    """The mode and the input files (targets, profile), checked before the run folder exists."""
    mode = str(cfg.mode)
    if mode not in MODES:
        raise UserError(f"mode: unknown '{mode}'; choose one of {', '.join(MODES)}")
    if mode == "profile":
        return
    if cfg.profile is not None:
        source = str(cfg.profile)
        gpulet = source.startswith(GPULET_PREFIX)
        path = Path(source.removeprefix(GPULET_PREFIX))
        if not (path.exists() if gpulet else path.is_file()):
            raise UserError(f"profile: {path}: no such file")
        try:
            cal.read_gpulet(path) if gpulet else cal.read_profile(path)
        except UnicodeDecodeError:
            raise UserError(f"profile: {path}: not UTF-8 text (a binary file?)") from None
        except ValueError as exc:
            raise UserError(f"profile: {exc}") from None
    else:
        load_targets(cfg.targets)


@hydra_app("calibrate", startup=startup)
def main(cfg: DictConfig, _ready: None, _interrupts: object) -> None:
    """Dispatch on ``mode``."""
    mode = str(cfg.mode)
    out = run_dir()
    if mode == "profile":
        run_profile(cfg, out)
    elif cfg.profile is not None:
        run_profile_check(cfg, out, fit=mode == "fit")
    elif mode == "validate":
        run_validate(cfg, out)
    else:
        run_fit(cfg, out)


if __name__ == "__main__":
    main()
