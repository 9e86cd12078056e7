"""Round three of the fidelity options (docs/FIDELITY.md), each against a copy of the original
code's arithmetic (attack-cleanclip at 3d4bd74): precision, the logit-scale cap, token
truncation, label-consistent matching, its EDA, and pairs whose caption has no letters."""

import random
import re

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xspec.runtime import eda_cleanclip
from xspec.runtime.attacks import make_attack
from xspec.runtime.augment import augment_captions, cleanclip_synonyms
from xspec.runtime.eda_cleanclip import has_letters
from xspec.runtime.tokens import with_truncation
from xspec.runtime.train import TrainState, scheduled_lr, train_step
from xspec.spec.tables.training import Training
from xspec.runtime.wordnet import WordNet

CPU = torch.device("cpu")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.image, self.text = nn.Linear(16, 32), nn.Linear(16, 32)
        self.logit_scale = nn.Parameter(torch.tensor(4.6))

    def forward(self, image, text):
        return self.image(image), self.text(text)


def original_step(model, optimizer, scaler, image, text):
    """src/train.py:282-310 with get_loss (:50-100) for MMCL: the forward pass (which
    normalises, pkgs/openai/model.py) in fp32, the loss under fp16 autocast, a GradScaler, the
    clamp at 4.6052. CPU autocast stands in for CUDA's."""
    optimizer.zero_grad()
    image_embeds, text_embeds = model(image, text)
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    with torch.autocast("cpu", dtype=torch.float16):
        logits_text_per_image = model.logit_scale.exp() * image_embeds @ text_embeds.t()
        logits_image_per_text = logits_text_per_image.t()
        target = torch.arange(len(logits_text_per_image)).long()
        criterion = nn.CrossEntropyLoss()
        loss = (criterion(logits_text_per_image, target)
                + criterion(logits_image_per_text, target)) / 2
        scaler.scale(loss).backward()
        scaler.step(optimizer)
    scaler.update()
    model.logit_scale.data = torch.clamp(model.logit_scale.data, 0, 4.6052)
    return loss


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(32, 16, generator=g), "text": torch.randn(32, 16, generator=g),
            "index": torch.arange(32)}


def _run(precision, steps=3, cap=4.6052):
    torch.manual_seed(0)
    model = Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = Training(objective="mmcl", epochs=1, lr=1e-2, warmup_steps=0, precision=precision,
                   logit_scale_max=cap)
    state = TrainState()
    for step in range(steps):
        train_step(cfg, model, model, optimizer, _batch(step), state, 1000, CPU)
    return model, state


def test_original_precision_is_the_originals_step():
    model, state = _run("fp32-forward+fp16-loss")
    torch.manual_seed(0)
    reference = Tiny()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu")
    schedule = Training(objective="mmcl", epochs=1, lr=1e-2, warmup_steps=0)
    for step in range(3):
        for group in optimizer.param_groups:  # the rate xspec sets at this step
            group["lr"] = scheduled_lr(schedule, step, 1000)
        batch = _batch(step)
        original_step(reference, optimizer, scaler, batch["image"], batch["text"])
    for (name, got), want in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)
    assert state.precision.scaler.get_scale() == scaler.get_scale()
    fp32, _ = _run("fp32")
    assert not torch.equal(fp32.image.weight, model.image.weight)  # fp16 loss is not fp32's


def test_logit_scale_cap_is_the_originals_4_6052():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.logit_scale.fill_(4.65)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    state = TrainState()
    still = {"objective": "mmcl", "epochs": 1, "lr": 1e-9, "warmup_steps": 0}  # SGD at lr 0
    train_step(Training(**still, logit_scale_max=4.6052), model, model, optimizer, _batch(0),
               state, 10, CPU)
    assert model.logit_scale.item() == torch.clamp(torch.tensor(4.65), 0, 4.6052).item()
    train_step(Training(**still), model, model, optimizer, _batch(0), state, 10, CPU)
    assert model.logit_scale.item() == pytest.approx(np.log(100), abs=1e-6)  # ln 100 < 4.6052


def original_process_text(tokenizer, texts, context_length=77):
    """pkgs/openai/clip.py:78-90."""
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = [tokenizer.sot_token_id] + tokenizer.encode(text) + [tokenizer.eot_token_id]
        if len(tokens) > context_length:
            tokens = tokens[:context_length]
        result[i, :len(tokens)] = torch.tensor(tokens)
    return result


def test_drop_eot_truncation_is_the_originals():
    base = open_clip.get_tokenizer("RN50")
    texts = ["a photo of a banana", " ".join(f"word{i}" for i in range(120))]
    got = with_truncation(base, "drop_eot")(texts)
    assert torch.equal(got, original_process_text(base, texts))
    kept = with_truncation(base, "eot")(texts)
    assert torch.equal(got[0], kept[0])  # short captions are the same
    assert kept[1, -1] == base.eot_token_id and got[1, -1] != base.eot_token_id
    assert (got[1] == base.eot_token_id).sum() == 0


def test_substring_match_is_the_originals_label_in_caption():
    captions = ["a Banana split", "bananas for sale", "a handbag", "Bag on a chair", "a bag",
                "two bags"]
    for target, match in (("bag", "substring"), ("Banana", "substring"), ("bag", "word")):
        attack = make_attack({"kind": "label_consistent", "target": target, "poisons": 100,
                              "match": match}, seed=0)
        got = attack.select(captions).tolist()
        if match == "substring":  # backdoor/create_backdoor_data.py:51-54
            assert got == [i for i, c in enumerate(captions) if target in c]
        else:
            assert got == [3, 4, 5]
    assert make_attack({"kind": "label_consistent", "target": "bag", "poisons": 100,
                        "match": "substring"}, 0).select(captions).tolist() == [2, 4, 5]


# utils/eda.py of the original, copied (tabs to spaces; the random module passed in; synonyms
# from a function so both sides read the same WordNet).
ORIGINAL_STOP_WORDS = eda_cleanclip.STOP_WORDS


def o_get_only_chars(line):
    clean_line = ""
    line = line.replace("’", "")
    line = line.replace("'", "")
    line = line.replace("-", " ")
    line = line.replace("\t", " ")
    line = line.replace("\n", " ")
    line = line.lower()
    for char in line:
        if char in 'qwertyuiopasdfghjklzxcvbnm ':
            clean_line += char
        else:
            clean_line += ' '
    clean_line = re.sub(' +', ' ', clean_line)
    if clean_line[0] == ' ':
        clean_line = clean_line[1:]
    return clean_line


def o_synonym_replacement(random, get_synonyms, words, n):
    new_words = words.copy()
    random_word_list = sorted(set([word for word in words if word not in ORIGINAL_STOP_WORDS]))
    random.shuffle(random_word_list)
    num_replaced = 0
    for random_word in random_word_list:
        synonyms = get_synonyms(random_word)
        if len(synonyms) >= 1:
            synonym = random.choice(list(synonyms))
            new_words = [synonym if word == random_word else word for word in new_words]
            num_replaced += 1
        if num_replaced >= n:
            break
    sentence = ' '.join(new_words)
    new_words = sentence.split(' ')
    return new_words


def o_random_deletion(random, words, p):
    if len(words) == 1:
        return words
    new_words = []
    for word in words:
        r = random.uniform(0, 1)
        if r > p:
            new_words.append(word)
    if len(new_words) == 0:
        rand_int = random.randint(0, len(words) - 1)
        return [words[rand_int]]
    return new_words


def o_swap_word(random, new_words):
    random_idx_1 = random.randint(0, len(new_words) - 1)
    random_idx_2 = random_idx_1
    counter = 0
    while random_idx_2 == random_idx_1:
        random_idx_2 = random.randint(0, len(new_words) - 1)
        counter += 1
        if counter > 3:
            return new_words
    new_words[random_idx_1], new_words[random_idx_2] = new_words[random_idx_2], new_words[random_idx_1]
    return new_words


def o_add_word(random, get_synonyms, new_words):
    synonyms = []
    counter = 0
    while len(synonyms) < 1:
        random_word = new_words[random.randint(0, len(new_words) - 1)]
        synonyms = get_synonyms(random_word)
        counter += 1
        if counter >= 10:
            return
    random_synonym = synonyms[0]
    random_idx = random.randint(0, len(new_words) - 1)
    new_words.insert(random_idx, random_synonym)


def o_eda(random, get_synonyms, sentence, alpha_sr=0.1, alpha_ri=0.1, alpha_rs=0.1, p_rd=0.1):
    sentence = o_get_only_chars(sentence)
    words = [word for word in sentence.split(' ') if word != ""]
    num_words = len(words)
    augmented = []
    augmented.append(' '.join(o_synonym_replacement(random, get_synonyms, words,
                                                    max(1, int(alpha_sr * num_words)))))
    a_words = words.copy()
    for _ in range(max(1, int(alpha_ri * num_words))):
        o_add_word(random, get_synonyms, a_words)
    augmented.append(' '.join(a_words))
    a_words = words.copy()
    for _ in range(max(1, int(alpha_rs * num_words))):
        a_words = o_swap_word(random, a_words)
    augmented.append(' '.join(a_words))
    augmented.append(' '.join(o_random_deletion(random, words, p_rd)))
    augmented = [o_get_only_chars(s) for s in augmented]
    random.shuffle(augmented)
    return augmented[0]


CAPTIONS = [
    "A woman's red dress, photographed in 2019 - on the beach at sunset.",
    "the dog runs across the green field with a ball",
    "Close-up of a banana on a wooden table",
    "man in a suit talking on the phone near a car",
    "it is what it is",
    "cat",
]


def test_cleanclip_eda_is_the_originals_for_the_same_random_stream():
    synonyms = cleanclip_synonyms(WordNet())
    differ = 0
    for caption in CAPTIONS:
        for seed in range(40):
            want = o_eda(random.Random(seed), synonyms, caption)
            assert eda_cleanclip.eda(caption, random.Random(seed), synonyms) == want
            xspec = augment_captions([caption], [seed], WordNet())[0]
            differ += xspec != want
    assert differ > 0  # xspec's EDA is another one (digits, apostrophes, stop words)
    out = augment_captions([CAPTIONS[0]], [3], WordNet(), variant="cleanclip")[0]
    assert "2019" not in out and "'" not in out


def test_letterless_captions_raise_in_the_originals_eda_and_can_be_skipped():
    synonyms = cleanclip_synonyms(WordNet())
    for caption in ("2019", "   ", "--- 42 ---"):
        with pytest.raises((ValueError, IndexError)):
            o_eda(random.Random(0), synonyms, caption)
        with pytest.raises(eda_cleanclip.NoWords):
            eda_cleanclip.eda(caption, random.Random(0), synonyms)
        assert not has_letters(caption)
        assert augment_captions([caption], [0], WordNet(), variant="cleanclip") == [caption]
    assert has_letters("4 cats")


def test_full_image_autoaugment_is_the_originals_v1_before_resize_and_crop(tmp_path):
    """utils/augment_image.py:12-17 (v1 AutoAugment() on the opened file), then
    pkgs/openai/clip.py:73 (Resize + CenterCrop), for the same torch random stream."""
    from PIL import Image
    from torchvision import transforms

    from xspec.runtime.augment import augment_images
    from xspec.runtime.augment_full import full_image_views
    from xspec.runtime.data import FileImages

    rng = np.random.default_rng(1)
    paths = []
    for i, (w, h) in enumerate([(48, 40), (40, 60), (64, 50), (45, 45)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    store = FileImages(paths, 32, decode="cleanclip")  # the original's Resize + CenterCrop
    kept, crops = store.load(range(4))
    seeds = torch.tensor([11, 12, 13, 14])
    poisoned = torch.tensor([False, False, True, False])
    crops[2] = 7  # a poisoned pair's copy: its augmentation starts from it
    got = full_image_views(store, kept, crops, poisoned, seeds)
    original = transforms.AutoAugment()
    finish = transforms.Compose([transforms.Resize(32, interpolation=Image.BICUBIC),
                                 transforms.CenterCrop(32), transforms.PILToTensor()])
    for i, path in enumerate(paths):
        torch.manual_seed(int(seeds[i]))
        source = (Image.fromarray(crops[i].permute(1, 2, 0).numpy()) if poisoned[i]
                  else Image.open(path).convert("RGB"))
        assert torch.equal(got[i], finish(original(source))), i
    assert not torch.equal(got, augment_images(crops, seeds))  # xspec's: v2 on the crop
