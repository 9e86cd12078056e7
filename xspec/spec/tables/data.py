"""`[data]`: the training pairs, the cleaning set and the evaluation set.

Each data format is a model tagged by `format` and registered with its runtime module
(`xspec.runtime.formats.<format>`); `PairSource` and `EvalSource` are the unions of the
formats registered when this module is imported (`xspec.spec.schema` rebuilds them with
plugins).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field

from xspec.extend.registry import DATA_SOURCES, register_data_source
from xspec.spec.base import Fraction, PositiveInt, XspecModel, tagged_union

Templates = Literal["clip80"]
FASHION_SIZES = {"train": 60_000, "test": 10_000}
FORMATS = "xspec.runtime.formats"
Decode = Literal["exact", "crop_first", "draft", "cleanclip", "nvjpeg"]
"""How image files are decoded to the model's size (xspec/runtime/decode.py): "exact" resizes
the whole image on its short side, then cuts the centre square; "crop_first" resizes only the
centre square (a few pixels 1-2/255 apart, faster); "draft" also lets libjpeg decode at 1/2-1/8
scale (pixels change more; off in the paper specs, docs/FIDELITY.md); "cleanclip" is
torchvision's Resize + CenterCrop arithmetic as the original code ran it; "nvjpeg" decodes JPEGs
in batches on the CUDA device (xspec/runtime/decode_gpu.py; "exact" arithmetic, nvjpeg's IDCT:
a few levels off; needs CUDA and run.workers = 0). Left out of node ids
when "exact"."""


@register_data_source(f"{FORMATS}.fashion_mnist", roles=("pairs", "eval"))
class FashionMnist(XspecModel):
    """Fashion-MNIST from Debian's `dataset-fashion-mnist`, captioned with web-style sentences."""

    format: Literal["fashion_mnist"]
    path: str = "/usr/share/datasets/fashion-mnist"
    split: Literal["train", "test"] = "train"
    size: PositiveInt | None = None


class PairFiles(XspecModel):
    """What every format of image-caption files declares; a subclass narrows `format`."""

    format: str
    path: str
    size: PositiveInt | None = None
    decode: Decode = Field("exact", exclude_if=lambda v: v == "exact")
    expected_size: PositiveInt | None = Field(None, exclude=True)
    """Pairs the dataset is expected to hold: `xspec plan`'s compute estimate counts it where
    the data is not readable (planning before it is staged). Never part of a node's id."""


@register_data_source(f"{FORMATS}.csv_pairs", roles=("pairs",))
class CsvPairs(PairFiles):
    """Image-caption pairs in the CleanCLIP/CC3M layout; image paths relative to the CSV."""

    format: Literal["csv"]
    image_key: str = "image"
    caption_key: str = "caption"


@register_data_source(f"{FORMATS}.webdataset", roles=("pairs",))
class WebDatasetPairs(PairFiles):
    """Image-caption pairs in WebDataset shards, as img2dataset writes them: `path` is a brace
    pattern ("cc3m/{00000..00331}.tar"), a glob or a folder of .tar files; each sample is
    KEY.jpg (or .png/.webp, or `image_ext`) with its caption in KEY.`caption_ext`. A pair's
    identity is its key; pairs are numbered in shard order, then member order."""

    format: Literal["webdataset"]
    image_ext: str | None = None
    caption_ext: str = "txt"


@register_data_source(f"{FORMATS}.imagefolder", roles=("eval",))
class ImageFolder(XspecModel):
    """One folder per class; `classes` names a class list (fashion_mnist, imagenet1k) or a file."""

    format: Literal["imagefolder"]
    path: str
    classes: str = "imagenet1k"
    size: PositiveInt | None = None
    decode: Decode = Field("exact", exclude_if=lambda v: v == "exact")


@register_data_source(f"{FORMATS}.labels_csv", roles=("eval",))
class LabelsCsv(XspecModel):
    """A CSV of image paths and integer labels (CleanCLIP's ImageNet validation layout)."""

    format: Literal["labels_csv"]
    path: str
    image_key: str = "image"
    label_key: str = "label"
    classes: str = "imagenet1k"
    size: PositiveInt | None = None
    decode: Decode = Field("exact", exclude_if=lambda v: v == "exact")


def sources(role: str) -> Any:
    """The union of the registered data formats allowed in `role` ("pairs" or "eval")."""
    return tagged_union([d.spec for d in DATA_SOURCES if role in d.roles], "format")


PairSource = sources("pairs")
EvalSource = sources("eval")


class CleanData(XspecModel):
    """The cleaning set: drawn from the training pool (`from = "train"`) or a separate source."""

    model_config = ConfigDict(populate_by_name=True)
    source: Annotated[Union[Literal["train"], PairSource], Field(alias="from")] = "train"
    size: PositiveInt = 100_000
    overlap: Literal["disjoint", "overlap"] = "disjoint"


class Data(XspecModel):
    train: PairSource
    clean: CleanData = CleanData()
    eval: EvalSource
    templates: Templates = "clip80"
    # Missing or undecodable images: skipped and counted (in status.json) up to this fraction
    # of a dataset, or fatal at the first one.
    on_bad_image: Literal["skip", "fail"] = "skip"
    max_bad_fraction: Fraction = 0.01
