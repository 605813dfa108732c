"""Real images and the augmentations people apply, for the leakage benchmarks (no downloads).

Sources: windows of scikit-learn's two bundled photos (downscaled to 32 px like CIFAR, or kept at
64 px) and the COVID-CT slices in ../shared/datasets (when present). Each transform returns a PIL
image derived from a source; shifts, crops and small rotations are cut from the *source photo*
around the window (as a re-crop of the original scene would be), not padded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

COVID_CT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "covid-ct"


def photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [np.asarray(i, dtype=np.uint8) for i in load_sample_images().images]


class Source:
    """A window (y, x, size) of a larger picture, rendered at `out` pixels."""

    def __init__(self, pic: np.ndarray, y: int, x: int, size: int, out: int):
        self.pic, self.y, self.x, self.size, self.out = pic, y, x, size, out

    def crop(self, dy: float = 0, dx: float = 0, scale: float = 1.0, angle: float = 0.0,
             out: int | None = None) -> Image.Image:
        out = out or self.out
        s = self.size * scale
        cy = self.y + self.size / 2 + dy * self.size
        cx = self.x + self.size / 2 + dx * self.size
        img = Image.fromarray(self.pic)
        if angle:
            big = img.crop((int(cx - s), int(cy - s), int(cx + s), int(cy + s)))
            big = big.rotate(angle, resample=Image.Resampling.BILINEAR)
            c = big.size[0] / 2
            img = big.crop((c - s / 2, c - s / 2, c + s / 2, c + s / 2))
        else:
            img = img.crop((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2))
        return img.resize((out, out), Image.Resampling.LANCZOS)


def photo_sources(size: int, out: int, margin: float = 0.25, stride: int | None = None) -> list[Source]:
    """Non-overlapping windows with content (grey std > 12) and room around them for shifts/rotations."""
    res = []
    stride = stride or size
    for pic in photos():
        gray = pic.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        h, w = pic.shape[:2]
        m = int(np.ceil(margin * size))
        for y in range(m, h - size - m + 1, stride):
            for x in range(m, w - size - m + 1, stride):
                if gray[y:y + size, x:x + size].std() > 12:
                    res.append(Source(pic, y, x, size, out))
    return res


def ct_images(limit: int | None = None, max_side: int = 256) -> list[tuple[str, Image.Image]]:
    """(relative path, RGB image) of COVID-CT slices, shrunk to max_side (empty when absent)."""
    out = []
    if not COVID_CT.is_dir():
        return out
    for p in sorted(COVID_CT.rglob("*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                im.thumbnail((max_side, max_side))
                out.append((str(p.relative_to(COVID_CT)), im.copy()))
        except OSError:
            continue
        if limit and len(out) >= limit:
            break
    return out


def ct_group(rel: str) -> str:
    """Figure/page group of a COVID-CT file name: prefix before '%', else before the last '-N'."""
    name = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if "%" in name:
        return name.split("%")[0]
    import re

    m = re.match(r"(.*-p\d+)", name)
    return m.group(1) if m else name


# -- transforms on a PIL image (for sources that are plain images, e.g. CT slices) -------------

def jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=int(rng.integers(30, 91)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def resize(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    f = float(rng.choice([rng.uniform(0.5, 0.8), rng.uniform(1.25, 2.0)]))
    w, h = img.size
    return img.resize((max(8, round(w * f)), max(8, round(h * f))), Image.Resampling.BICUBIC)


def brightness(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.6, 1.4)))
    return ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.6, 1.4)))


def hflip(img, rng):
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def vflip(img, rng):
    return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def rot90(img, rng):
    return img.transpose([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                          Image.Transpose.ROTATE_270][int(rng.integers(0, 3))])


def crop(img: Image.Image, rng: np.random.Generator, max_frac: float = 0.10) -> Image.Image:
    """Cut up to max_frac of the width and height (split at random between the sides)."""
    w, h = img.size
    fx, fy = rng.uniform(0.04, max_frac, size=2)
    left = int(w * fx * rng.uniform())
    right = int(w * fx) - left
    top = int(h * fy * rng.uniform())
    bottom = int(h * fy) - top
    return img.crop((left, top, w - right, h - bottom))


def shift(img: Image.Image, rng: np.random.Generator, max_frac: float = 0.10) -> Image.Image:
    """Translate by up to max_frac with edge fill (a Keras-style shift augmentation)."""
    w, h = img.size
    dx = int(round(w * rng.uniform(-max_frac, max_frac)))
    dy = int(round(h * rng.uniform(-max_frac, max_frac)))
    arr = np.asarray(img)
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return Image.fromarray(arr[ys][:, xs])


def small_rotation(img: Image.Image, rng: np.random.Generator, max_deg: float = 10.0) -> Image.Image:
    ang = float(rng.uniform(2, max_deg)) * (1 if rng.uniform() < 0.5 else -1)
    return img.rotate(ang, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))


IMAGE_TRANSFORMS = {
    "jpeg": jpeg, "resize": resize, "brightness": brightness, "hflip": hflip, "vflip": vflip,
    "rot90": rot90, "crop10": crop, "shift10": shift, "rotate": small_rotation,
}



# -- further edits seen in real datasets and augmentation pipelines (`--extra`) -----------------

def blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur of 0.5-1.5% of the image side (torchvision GaussianBlur, a soft re-scan)."""
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.005, 0.015)) * max(img.size)))


def noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Additive Gaussian noise, sigma 4-12 grey levels (GaussNoise)."""
    arr = np.asarray(img.convert("RGB"), np.float32)
    arr = arr + rng.normal(0, float(rng.uniform(4, 12)), size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def grayscale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.convert("L").convert("RGB")


def gamma(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Gamma 0.6-0.85 or 1.2-1.7 (a different display window or camera curve)."""
    g = float(rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.2, 1.7)]))
    lut = [round(255 * (i / 255) ** g) for i in range(256)]
    return img.convert("RGB").point(lut * 3)


def colour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Saturation x0.5-1.5 and a hue turn of up to 0.08 of the circle (ColorJitter)."""
    img = ImageEnhance.Color(img.convert("RGB")).enhance(float(rng.uniform(0.5, 1.5)))
    h, s, v = img.convert("HSV").split()
    turn = int(rng.uniform(-0.08, 0.08) * 255)
    h = h.point(lambda x: (x + turn) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def equalize(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Histogram equalisation (what a different CT window or an auto-levels step does)."""
    return ImageOps.equalize(img.convert("RGB"))


def pad(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A black or white border of 3-10% on every side (letterboxing, a figure's margin)."""
    w, h = img.size
    b = max(1, int(round(max(w, h) * float(rng.uniform(0.03, 0.10)))))
    fill = (0, 0, 0) if rng.uniform() < 0.5 else (255, 255, 255)
    return ImageOps.expand(img.convert("RGB"), border=b, fill=fill)


def stretch(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Resize to a different aspect ratio: one side x0.8-0.9 (a resize without keeping the aspect)."""
    w, h = img.size
    f = float(rng.uniform(0.8, 0.9))
    return img.resize((max(8, round(w * f)), h) if rng.uniform() < 0.5 else (w, max(8, round(h * f))),
                      Image.Resampling.BICUBIC)


def annotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An arrow and a short label drawn on the image (figures in papers, marked-up scans)."""
    img = img.convert("RGB").copy()
    w, h = img.size
    d = ImageDraw.Draw(img)
    colour_ = tuple(int(c) for c in rng.choice([[255, 255, 255], [255, 255, 0], [255, 0, 0]]))
    x0, y0 = float(rng.uniform(0.2, 0.8)) * w, float(rng.uniform(0.2, 0.8)) * h
    x1, y1 = x0 + float(rng.uniform(0.08, 0.15)) * w, y0 + float(rng.uniform(0.08, 0.15)) * h
    lw = max(1, round(min(w, h) / 64))
    d.line([(x0, y0), (x1, y1)], fill=colour_, width=lw)
    d.polygon([(x0, y0), (x0 + 3 * lw, y0 + lw), (x0 + lw, y0 + 3 * lw)], fill=colour_)
    d.text((float(rng.uniform(0.02, 0.1)) * w, float(rng.uniform(0.02, 0.1)) * h), "A", fill=colour_)
    return img


def republish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Cropped by up to 6%, resized x0.6-1.4 and saved as JPEG quality 50-85 (a figure re-used)."""
    out = resize(crop(img, rng, max_frac=0.06), rng)
    buf = io.BytesIO()
    out.convert("RGB").save(buf, "JPEG", quality=int(rng.integers(50, 86)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop_one_axis(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The centre 75-85% of one side only, the other side whole (a 4:3 picture cut to a square)."""
    w, h = img.size
    keep = float(rng.uniform(0.75, 0.85))
    if rng.uniform() < 0.5:
        nw = round(w * keep)
        return img.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
    nh = round(h * keep)
    return img.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))


EXTRA_TRANSFORMS = {
    "blur": blur, "noise": noise, "gray": grayscale, "gamma": gamma, "colour": colour,
    "equalize": equalize, "pad": pad, "stretch": stretch, "annotate": annotate, "republish": republish,
    "crop1axis": crop_one_axis,
}
ALL_TRANSFORMS = {**IMAGE_TRANSFORMS, **EXTRA_TRANSFORMS}

# -- transforms on a Source (re-cut from the original scene) --------------------------------

def source_transform(name: str, src: Source, rng: np.random.Generator) -> Image.Image:
    if name == "shift10":
        d = rng.uniform(-0.10, 0.10, size=2)
        d[int(rng.integers(0, 2))] = rng.choice([-1, 1]) * rng.uniform(0.05, 0.10)
        return src.crop(dy=float(d[0]), dx=float(d[1]))
    if name == "crop10":
        s = float(rng.uniform(0.80, 0.92))
        off = (1 - s) / 2
        return src.crop(dy=float(rng.uniform(-off, off)), dx=float(rng.uniform(-off, off)), scale=s)
    if name == "rotate":
        ang = float(rng.uniform(2, 10)) * (1 if rng.uniform() < 0.5 else -1)
        return src.crop(angle=ang, scale=0.9)
    return ALL_TRANSFORMS[name](src.crop(), rng)
