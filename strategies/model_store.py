"""Model files: a joblib file with the fitted estimators plus a JSON file of metadata next to it.

The metadata says what the model needs (feature names in order, label parameters), where it comes from (training
window, symbols) and how good it was out of sample (walk-forward metrics), and which library versions wrote it. A
model is refused with one clear message when its features differ from what the running code computes or when it was
written by another major.minor version of scikit-learn or NumPy (pickles are not portable across them): retrain it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic_files import write_atomically
from strategies.model_swap import install, meta_path, staged_path

FORMAT = 1
MODEL_FILE = "vigil-ml.joblib"   # in DATA_DIR/models: where `train` writes and the bot looks


class ModelMismatch(Exception):
    """The model file cannot be used by this code; ``str(exc)`` says why and what to do."""


def library_versions() -> dict[str, str]:
    """Read from the installed distributions: no import of scikit-learn just to compare versions."""
    from importlib.metadata import version

    return {"python": platform.python_version(), "scikit-learn": version("scikit-learn"), "numpy": np.__version__,
            "pandas": version("pandas"), "joblib": version("joblib")}


def features_digest(features: list[str]) -> str:
    return hashlib.sha256("\n".join(features).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ModelMeta:
    kind: str                          # e.g. "ensemble-v1"
    features: list[str]
    label: dict[str, Any]              # BarrierParams as a dict
    symbols: list[str]
    train_start: str                   # ISO UTC
    train_end: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    format: int = FORMAT

    @property
    def digest(self) -> str:
        return features_digest(self.features)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["features_digest"] = self.digest
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelMeta:
        known = {k: data[k] for k in ("kind", "features", "label", "symbols", "train_start", "train_end",
                                      "created_at", "metrics", "versions", "format") if k in data}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class StoredModel:
    meta: ModelMeta
    estimators: dict[str, Any]         # "long" / "short" → fitted classifier with predict_proba
    path: Path


def save_model(path: Path, estimators: dict[str, Any], meta: ModelMeta) -> Path:
    """Write the pair at ``path`` so that a crash at any point leaves the previous pair or the new one (once the
    loader's ``model_swap.finish_interrupted`` has run), never a model with another model's metadata: both files are
    staged completely as ``MODEL.candidate.*``, then ``model_swap.install`` puts them in place (the replaced pair
    becomes ``MODEL.previous.*``)."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    staged = staged_path(path)
    write_atomically(staged, lambda f: joblib.dump(estimators, f, compress=3))
    write_atomically(meta_path(staged), lambda f: f.write(json.dumps(meta.to_json(), indent=2).encode()))
    install(staged, path)
    return path


def read_meta(path: Path) -> ModelMeta:
    mp = meta_path(path)
    if not mp.is_file():
        raise ModelMismatch(f"{mp} is missing: a model needs its metadata file; retrain with `python main.py train`")
    try:
        return ModelMeta.from_json(json.loads(mp.read_text()))
    except (ValueError, TypeError) as exc:
        raise ModelMismatch(f"{mp} is not valid model metadata ({exc}); retrain with `python main.py train`") from exc


def check_compatible(meta: ModelMeta, expected_features: list[str], where: Path) -> None:
    if meta.format != FORMAT:
        raise ModelMismatch(f"{where} has model format {meta.format}, this Vigil reads {FORMAT}; retrain with "
                            "`python main.py train`")
    here = library_versions()
    for lib in ("scikit-learn", "numpy"):
        theirs, ours = meta.versions.get(lib, "?"), here[lib]
        if theirs.split(".")[:2] != ours.split(".")[:2]:
            raise ModelMismatch(f"{where} was trained with {lib} {theirs}, this Vigil runs {ours}; retrain with "
                                "`python main.py train` (or install the same version where it was trained)")
    if meta.features != expected_features:
        missing = [f for f in expected_features if f not in meta.features]
        extra = [f for f in meta.features if f not in expected_features]
        detail = "; ".join(part for part in (
            f"{len(missing)} features it lacks (e.g. {', '.join(missing[:3])})" if missing else "",
            f"{len(extra)} it has that this code does not compute (e.g. {', '.join(extra[:3])})" if extra else "",
            "the same features in another order" if not missing and not extra else "") if part)
        raise ModelMismatch(f"{where} does not match this code's features: {detail}; retrain with "
                            "`python main.py train`")


def load_model(path: Path, expected_features: list[str]) -> StoredModel:
    """The model at ``path`` if this code can use it; ``ModelMismatch`` with what to do otherwise."""
    if not path.is_file():
        raise ModelMismatch(f"no model at {path}; train one with `python main.py train`")
    meta = read_meta(path)
    check_compatible(meta, expected_features, path)
    import joblib

    try:
        estimators = joblib.load(path)
    except Exception as exc:
        raise ModelMismatch(f"{path} could not be read ({type(exc).__name__}); retrain with `python main.py train`"
                            ) from exc
    if not isinstance(estimators, dict) or not {"long", "short"} <= set(estimators):
        raise ModelMismatch(f"{path} does not hold a long and a short model; retrain with `python main.py train`")
    return StoredModel(meta, estimators, path)


def utc_iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
