"""`[clean] sufi`: supervised fine-tuning (SuFi), the CleanCLIP paper's second defence (Bansal et
al. 2023, section 6): fine-tune the image encoder with cross-entropy on a labelled clean set
instead of the contrastive objective. Cleaning then trains on that set, not on the cleaning pairs.

    [clean]
    lr = 1e-4
    epochs = 10
    warmup_steps = 500
    weight_decay = 0.01
    sufi = { data = { format = "imagefolder", path = "${DATA}/imagenet/train50k" } }

`head = "zeroshot"` (the default) classifies with the starting model's zero-shot class text
embeddings (the mean of the normalised CLIP templates per class, fixed) at the model's logit
scale, so the cleaned model stays a zero-shot CLIP and the evaluator measures it unchanged.
`head = "linear"` is what the original code does (CleanCLIP `src/evaluate.py:92-99,157-203`):
a fresh linear layer on the unnormalised image features, trained with the encoder. The text
tower is never trained (no gradient reaches it, as in the original). docs/FIDELITY.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from xspec.extend import PositiveInt, XspecModel, register_defence
from xspec.spec.schema import EvalSource


class SuFi(XspecModel):
    data: EvalSource
    """The labelled clean set (imagefolder, labels_csv or fashion_mnist; any evaluation format)."""
    head: Literal["zeroshot", "linear"] = "zeroshot"
    """zeroshot: logits from the starting model's class text embeddings (fixed); linear: a fresh
    linear head on the image features, as the original code trains it."""
    batch_size: PositiveInt | None = None
    """Labelled images per step; default clean.batch_size."""


@dataclass
class LabelledBatch:
    """Recipe (picklable, for loader workers): image indices -> (kept, uint8 images)."""

    images: Any

    def __call__(self, indices: list[int]):
        return self.images.load(indices)


class LabelledBatches:
    """The labelled set in seeded batches: an epoch is one pass over it in a fresh order."""

    def __init__(self, labelled, batch_size: int, seed: int, normalize, device, workers: int):
        from xspec.runtime.loader import Loader

        self.set, self.seed, self.normalize, self.device = labelled, seed, normalize, device
        self.batch_size = min(batch_size, len(labelled.labels))
        self.loader = Loader(LabelledBatch(labelled.images), workers, device.type == "cuda")

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.set.labels) // self.batch_size)

    def batches(self, epoch: int, dist=None):
        import torch

        from xspec.runtime.pipeline import on_device
        from xspec.runtime.seeding import generator

        perm = torch.randperm(len(self.set.labels), generator=generator(self.seed, "sufi-order",
                                                                        epoch)).tolist()
        jobs = [perm[i * self.batch_size:(i + 1) * self.batch_size]
                for i in range(self.steps_per_epoch)]
        if dist is not None and dist.world > 1:
            jobs = [dist.shard(job) for job in jobs]
        for _, (kept, images) in self.loader.run(jobs):
            if len(kept) < 2:
                continue
            yield {"index": torch.as_tensor(kept), "image": on_device(images, self.device,
                                                                        self.normalize),
                   "label": torch.from_numpy(self.set.labels[kept]).to(self.device)}


def cross_entropy(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels)


def zero_shot_head(model, tokenizer, classes, device):
    """[n_classes, dim]: the starting model's class text embeddings (clip80 templates), fixed."""
    from xspec.runtime.evaluate import clip80_templates, zero_shot_classifier

    return zero_shot_classifier(model, tokenizer, list(classes), clip80_templates(),
                                device).T.contiguous()


def build(spec: SuFi, setup):
    import torch.nn.functional as F

    from xspec.errors import DataError
    from xspec.extend import Pieces
    from xspec.runtime.data import open_eval
    from xspec.runtime.models import image_stats

    size = image_stats(setup.model)[2]
    labelled = open_eval(spec.data.model_dump(mode="json"), size)
    batches = LabelledBatches(labelled, spec.batch_size or setup.config.batch_size,
                              setup.seed, setup.data.normalize, setup.device, workers=0)
    model = setup.model
    if spec.head == "zeroshot":
        weights = zero_shot_head(model, setup.data.tokenizer, labelled.classes, setup.device)
        scale = float(model.logit_scale.detach().exp())

        def logits_of(images):
            features = F.normalize(model.encode_image(images), dim=-1)
            return scale * features @ weights.T, features
    else:
        head = linear_head(model, size, len(labelled.classes), setup)

        def logits_of(images):
            raw = model.encode_image(images)
            return head(raw), F.normalize(raw, dim=-1)

    setup.log(f"sufi: {len(labelled.labels)} labelled images of {len(labelled.classes)} classes, "
              f"{spec.head} head")

    def loss(model, net, batch):
        if net is not model:
            raise DataError("clean.sufi trains in one process; run it on one GPU (or the CPU)")
        logits, features = logits_of(batch["image"])
        value = cross_entropy(logits, batch["label"])
        return value, {"sufi_ce": value}, {"image": features}

    return Pieces(loss=loss, batches=batches)


def linear_head(model, size: int, classes: int, setup):
    """A fresh linear layer on the unnormalised image features, seeded; AdamW weight decay
    `clean.weight_decay` on its weight, none on its bias (CleanCLIP `src/evaluate.py:167`)."""
    import torch

    with torch.no_grad():
        dim = model.encode_image(torch.zeros(1, 3, size, size, device=setup.device)).shape[1]
    torch.manual_seed(setup.seed)
    head = torch.nn.Linear(dim, classes).to(setup.device)
    setup.param_group("sufi_weight", [head.weight], weight_decay=setup.config.weight_decay)
    setup.param_group("sufi_bias", [head.bias], weight_decay=0.0)
    return head


register_defence("sufi", build, annotation=SuFi | None, default=None, version="1",
                 packable=False,
                 description="Supervised fine-tuning on a labelled clean set (CleanCLIP's SuFi).")
