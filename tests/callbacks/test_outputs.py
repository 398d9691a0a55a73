"""What ``fit``, ``test`` and ``predict`` leave for a person: readable image grids in the run folder, prediction folders
whose raw files give back the predicted values under the input files' names, and ``results.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from data_modules.paired import PairedDataModule, _IndexSubset
from data_modules.real import FolderDomain
from tests.helpers import BASE, SMALL_DATA, SOURCE_ONLY, ToyDomain, config_args, run_cli, tiny_model, tiny_trainer
from tests.helpers import real_fixtures as fx
from umadapt import visualize
from umadapt.callbacks.outputs import ImageGridLogger, PredictionWriter, ResultsWriter, sample_names
from umadapt.errors import ConfigError


class Predictor(pl.LightningModule):
    """Predictions that are plain functions of the image, recorded in order: what the files must hold."""

    tasks = ("depth", "normals", "segmentation")
    eval_domains = ("source", "target")

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv2d(3, 1, 1)
        self.predicted: list[dict[str, torch.Tensor]] = []

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "depth": 1.0 + 3.0 * image.mean(1, keepdim=True) + 0.0 * self.layer(image),
            "normals": F.normalize(image * 2 - 1 + 1e-3, dim=1),
            "segmentation": image * 4,
            "label": image.mean((2, 3)),
        }

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.layer(batch["source"]["image"]).mean()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        return None

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        out = {"image": batch["image"], **self(batch["image"])}
        self.predicted += [{k: v[i].detach().clone() for k, v in out.items()} for i in range(len(batch["image"]))]
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _predict(datamodule: PairedDataModule, output: Path) -> Predictor:
    model = Predictor()
    tiny_trainer(output.parent, [PredictionWriter(str(output))]).predict(
        model, datamodule=datamodule, return_predictions=False
    )
    return model


@pytest.fixture
def folder_data(tmp_path: Path) -> tuple[FolderDomain, PairedDataModule]:
    domain = FolderDomain(root=str(fx.write_folder(tmp_path / "sim", count=10)), name="sim", image_size=(16, 24))
    return domain, PairedDataModule(domain, domain, batch_size=2)


def test_predictions_of_folder_data_are_named_after_the_input_files_and_hold_the_values(tmp_path, folder_data):
    domain, datamodule = folder_data
    out = tmp_path / "predictions"
    model = _predict(datamodule, out)
    names = domain.items("test")
    assert len(names) == len(model.predicted) >= 2
    for name, predicted in zip(names, model.predicted):
        for key in ("image", "depth", "normals", "segmentation"):
            assert (out / f"{name}_{key}.png").is_file(), f"no colourised {key} for {name}"
        depth = np.asarray(Image.open(out / "depth" / f"{name}.png"))
        assert depth.dtype == np.uint16
        np.testing.assert_allclose(depth / 1000.0, predicted["depth"][0].numpy(), atol=5e-4)
        segmentation = np.asarray(Image.open(out / "segmentation" / f"{name}.png"))
        assert segmentation.dtype == np.uint8 and (segmentation == predicted["segmentation"].argmax(0).numpy()).all()
        normals = np.load(out / "normals" / f"{name}.npy")
        assert normals.dtype == np.float32 and normals.shape == (16, 24, 3)
        np.testing.assert_array_equal(normals, predicted["normals"].permute(1, 2, 0).numpy())
    with (out / "labels.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [r["name"] for r in rows] == names
    best = [int(p["label"].argmax()) for p in model.predicted]
    assert [int(r["class_id"]) for r in rows] == best and [r["class_name"] for r in rows] == [fx.NYU13[b] for b in best]


def test_predictions_of_unnamed_samples_keep_index_names(tmp_path, toy_domains):
    out = tmp_path / "predictions"
    _predict(PairedDataModule(*toy_domains, batch_size=3), out)
    assert sorted(p.name for p in (out / "depth").iterdir()) == [f"{i:05d}.png" for i in range(8)]
    assert (out / "00007_segmentation.png").is_file() and (out / "normals" / "00000.npy").is_file()


def test_sample_names_follow_subsets_and_refuse_clashes(folder_data):
    domain, _ = folder_data
    files = domain.dataset("test")
    assert sample_names(files) == domain.items("test")
    assert sample_names(_IndexSubset(files, [1, 0])) == domain.items("test")[::-1]
    files.items = [Path("a/x.png"), Path("b/x.png")]
    assert sample_names(files) is None, "two inputs named x would overwrite each other's predictions"


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        PredictionWriter(str(tmp_path / "taken"))


def test_validation_grids_are_readable_and_land_in_the_run_folder(tmp_path, toy_domains, drawn_text):
    logger = CSVLogger(tmp_path, name="run")
    trainer = tiny_trainer(
        tmp_path,
        [ImageGridLogger(num_images=2)],
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        logger=logger,
    )
    trainer.fit(Predictor(), datamodule=PairedDataModule(*toy_domains, batch_size=2))
    for domain in ("source", "target"):
        grid = np.asarray(Image.open(Path(logger.log_dir) / "images" / f"val_{domain}_epoch000.png"))
        tile = visualize.MIN_TILE + 2
        assert grid.shape[1] == 7 * tile + 2, "input + 3 tasks x (truth, prediction), 32-pixel images shown at 128"
        assert grid.shape[0] > 2 * tile + 60, "headers above and colour bar and legend below the rows of tiles"
    assert {"input", "ground truth", "prediction", "depth (m)", "left", "right"} <= set(drawn_text)


# -- results.json -----------------------------------------------------------------------------------------------------
def test_results_path_that_is_a_directory_fails_before_testing(trained_run, tmp_path):
    result = run_cli(
        "test",
        *config_args(BASE, SOURCE_ONLY),
        *SMALL_DATA,
        f"--ckpt_path={trained_run}/checkpoints/last.ckpt",
        f"--results.path={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "is a directory" in result.stderr and "Traceback" not in result.stderr
    assert "umadapt test results" not in result.stdout


def test_missing_labels_are_counted_not_written_as_nan(tmp_path, toy_domains):
    model = tiny_model(tasks=["depth"], width=4)
    results = tmp_path / "results.json"
    trainer = tiny_trainer(tmp_path, callbacks=[ResultsWriter(str(results))])
    with pytest.warns(UserWarning, match=r"test/target: 8 of 8 samples have no 'depth' labels; it is not scored"):
        trainer.test(
            model,
            PairedDataModule(toy_domains[0], ToyDomain(seed=1, unlabelled=("depth",)), batch_size=4, tasks=["depth"]),
        )
    record = json.loads(results.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
    assert record["samples"]["test/target/depth"] == {"labelled": 0, "unlabelled": 8}
    assert "test/source/depth/rmse" in record["metrics"] and not any("test/target" in k for k in record["metrics"])


def test_image_grid_with_no_images_writes_none_and_bad_settings_are_named(tmp_path, toy_domains):
    """num_images: 0 crashed validation with an IndexError (an empty grid); it now turns grids off."""
    logger = CSVLogger(tmp_path, name="run")
    trainer = tiny_trainer(
        tmp_path,
        [ImageGridLogger(num_images=0)],
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        logger=logger,
    )
    trainer.fit(Predictor(), datamodule=PairedDataModule(*toy_domains, batch_size=2))
    assert not (Path(logger.log_dir) / "images").exists()
    with pytest.raises(ConfigError, match="num_images must be >= 0"):
        ImageGridLogger(num_images=-1)
