"""``mka train conditioner NAME``: align conditioner NAME into an existing model's space.

Paired data: each manifest row gives the teacher's input (``caption`` - what the model's own
conditioner reads) and the student's input (column ``model.input_column``, for example an
``image`` column of file paths, or ``audio_path``). The student is NAME wrapped in an
``adapter`` (frozen encoder, trained projection) unless NAME has trainable parameters of its
own and already writes into the model's space (``model.adapter = "none"``). The loss regresses
the student's condition onto the teacher's: per-token MSE when both are sequences of the same
length, else MSE between masked means; plus ``cosine_weight`` x (1 - cosine similarity).
The export is the model's pipeline driven by the aligned student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.utils.data import Dataset

from mka_core.conditioning import Condition
from mka_core.config import StrictModel
from mka_core.errors import InputError
from training.data.manifest import ManifestRow
from training.recipe import Recipe
from training.targets.base import StepOutput, TrainTarget
from training.targets.common import detached_copy, load_pipeline_cpu, load_rows


class ConditionerModelSection(StrictModel):
    student: str = Field("", description="the conditioner to align (the NAME of `mka train conditioner NAME`)")
    student_options: dict[str, Any] = Field(default_factory=dict)
    random_student: bool = Field(False, description="a tiny random student encoder (tests)")
    pipeline: str = Field("", description="the model whose conditioner is the teacher and whose space to align into")
    input_column: str = Field("caption", description="manifest column with the student's input")
    adapter: Literal["auto", "linear", "mlp", "none"] = "auto"
    hidden: int = Field(512, ge=1, description="hidden width of an mlp adapter")
    cosine_weight: float = Field(1.0, ge=0)


class ConditionerRecipe(Recipe):
    target: str = "conditioner"
    model: ConditionerModelSection = ConditionerModelSection()


class PairDataset(Dataset):
    def __init__(self, rows: list[ManifestRow], column: str, base: Path) -> None:
        self.rows, self.column, self.base = rows, column, base

    def __len__(self) -> int:
        return len(self.rows)

    def student_input(self, row: ManifestRow) -> str:
        if self.column in ("caption", "audio_path", "name"):
            return getattr(row, self.column)
        value = row.extra.get(self.column, "")
        if value and not Path(value).is_absolute() and (self.base / value).exists():
            return str(self.base / value)
        return value

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = key[0] if isinstance(key, tuple) else key
        row = self.rows[index]
        return {"teacher": row.caption, "student": self.student_input(row), "name": row.name}


def alignment_loss(student: Condition, teacher: Condition, cosine_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    s, t = student.embeds.float(), teacher.embeds.float()
    if s.shape == t.shape and s.shape[1] > 1:
        mask = teacher.mask.to(s.dtype)[..., None]
        mse = ((s - t).square() * mask).sum() / (mask.sum() * s.shape[-1]).clamp_min(1.0)
        cos = (F.cosine_similarity(s, t, dim=-1) * mask[..., 0]).sum() / mask.sum().clamp_min(1.0)
    else:
        def pooled(c: Condition, e: torch.Tensor) -> torch.Tensor:
            w = c.mask.to(e.dtype)[..., None]
            return ((e * w).sum(1) / w.sum(1).clamp_min(1.0))

        ps, pt = pooled(student, s), pooled(teacher, t)
        mse = (ps - pt).square().mean()
        cos = F.cosine_similarity(ps, pt, dim=-1).mean()
    loss = mse + cosine_weight * (1 - cos)
    return loss, {"mse": mse.item(), "cosine": cos.item()}


class ConditionerTarget(TrainTarget):
    name = "conditioner"
    summary = "align a conditioner into a model's embedding space from paired data (adapter regression)"
    recipe_class = ConditionerRecipe

    @staticmethod
    def positional_overrides(extra: list[str]) -> list[str]:
        if len(extra) > 1:
            raise InputError("Usage: mka train conditioner NAME --set model.pipeline=MODEL --data PAIRS.tsv")
        return [f'model.student="{extra[0]}"'] if extra else []

    def setup(self) -> None:
        from mka_core.plugins import manager

        model = self.recipe.model
        if self.context.world > 1:
            raise InputError("Conditioner alignment runs in one process (it is small); start it without torchrun.")
        if not model.student:
            raise InputError("Name the conditioner to align: mka train conditioner NAME (or set model.student).")
        if not model.pipeline:
            raise InputError("Set model.pipeline=MODEL_FOLDER: the model whose embedding space the conditioner joins.")
        self.pipeline = load_pipeline_cpu(model.pipeline)
        self.teacher = self.pipeline.conditioner.to(self.device).eval().requires_grad_(False)
        cls = manager.get("conditioner", model.student)
        if model.random_student:
            base = cls.build_random("tiny", self.recipe.run.seed, **model.student_options)
        else:
            base = cls(cls.Options(**model.student_options))
        space = self.teacher.space
        if model.adapter == "none":
            if base.space != space:
                raise InputError(f"'{model.student}' writes into {base.space.describe()}, not the model's "
                                 f"{space.describe()}; use model.adapter=auto to learn a projection.")
            if not base.trainable_parameters():
                raise InputError(f"'{model.student}' has no trainable parameters; use model.adapter=auto.")
            student, params = base, base.trainable_parameters()
        else:
            from mka_plugins.conditioners.adapter import AdapterConditioner

            hidden = model.hidden if model.adapter == "mlp" else 0
            options = AdapterConditioner.Options(base=model.student, base_options=dict(model.student_options),
                                                 space=space, base_dim=base.space.dim, base_tokens=base.space.tokens,
                                                 hidden=hidden)
            torch.manual_seed(self.recipe.run.seed)
            student = AdapterConditioner(options, base=base)
            student.set_null_condition(self.teacher.null_condition(1))
            params = student.trainable_parameters()
        self.add_module("student", student, optimizer="main", parameters=params)
        rows = load_rows(self.recipe.data.train, self.context, need_caption=True)
        base_dir = Path(self.recipe.data.train).parent
        self.train_data = PairDataset(rows, model.input_column, base_dir)
        if self.recipe.data.valid:
            valid = load_rows(self.recipe.data.valid, self.context, need_caption=True, label="valid")
            self.valid_data = PairDataset(valid, model.input_column, Path(self.recipe.data.valid).parent)
        from mka_core.embedding_cache import EmbeddingCache

        cache_root = Path(self.recipe.data.cache_dir) if self.recipe.data.cache_dir else self.context.run_dir / "cache"
        self.cache = EmbeddingCache(cache_root / "teacher")

    def _teacher(self, inputs: list[str]) -> Condition:
        from mka_core.embedding_cache import encode_with_cache

        return encode_with_cache(self.teacher, inputs, self.cache)

    def _loss(self, batch: dict[str, Any], student) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = self._teacher(list(batch["teacher"])).to(self.device, torch.float32)
        prepared = self.raw("student").prepare(list(batch["student"]))
        cond = student.forward(prepared)  # Conditioner.__call__ would prepare again
        return alignment_loss(cond, teacher, self.recipe.model.cosine_weight)

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> Iterator[StepOutput]:
        loss, logs = self._loss(batch, self.raw("student"))
        yield StepOutput("main", loss, {"loss": loss.item(), **logs})

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        loss, logs = self._loss(batch, self.raw("student"))
        return {"loss": loss.item(), **logs}

    def export(self, out_dir: Path) -> Path:
        from mka_core.pipeline import Pipeline

        student = detached_copy(self.raw("student"))
        config = self.pipeline.config.model_copy(update={"conditioner": student.name,
                                                         "origin": f"aligned:{self.context.run_dir.name}"})
        pipe = Pipeline(config, student, self.pipeline.vae, self.pipeline.unet, self.pipeline.vocoder, device=self.device)
        return pipe.save_pretrained(out_dir, overwrite=True)
