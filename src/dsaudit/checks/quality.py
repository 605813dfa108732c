"""DSA40x: image quality. Too dark, too bright, blurry, near-constant, greyscale in a colour
dataset, odd sizes and aspect ratios, from the properties measured during the one decode
(dsaudit.content.properties); no image is opened again.

Every flag reports a score per flagged image, its rate per split and per class, and a histogram of
the score over the dataset (report section "content.quality"). When the flagged images gather in one
class (Fisher exact test of that class against the others), the finding says so and becomes a
warning: a model can learn "blurry means class X", a shortcut that fails on data without the flaw.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from dsaudit.checks.balance import pct, split_name
from dsaudit.checks.base import Check, CheckContext
from dsaudit.content.analysis import ContentAnalysis, content_analysis, histogram
from dsaudit.findings import Finding, Severity
from dsaudit.stats import hypergeom_sf

MIN_IMAGES = 10         # a dataset-relative flag needs at least this many reference images
MIN_SHORTCUT = 5        # flagged images needed before a concentration in one class is reported


class QualityCheck(Check):
    """Base of the quality flags: subclasses say which images are flagged and with what score."""

    family = "quality"
    requires = (ContentAnalysis,)

    score: str = ""            # name of the per-image score in the evidence
    higher_is_worse = False    # how the flagged images are ordered (worst first)
    what = ""                  # "too dark", for titles and messages
    relative = False           # judged against the reference split's median: needs MIN_IMAGES of it
    # near-constant images are reported by DSA404 only, not also by this flag
    leaves_low_information = False

    def flags(self, a: ContentAnalysis, ctx: CheckContext) -> tuple[np.ndarray, np.ndarray, str] | None:
        """(flagged mask, score per image, the rule in words), or None when it does not apply."""
        raise NotImplementedError

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        a = content_analysis(ctx)
        if len(a) == 0 or (self.relative and a.reference.sum() < MIN_IMAGES):
            return
        got = self.flags(a, ctx)
        if got is None:
            return
        mask, score, rule = got
        if self.leaves_low_information:
            mask = mask & ~low_information(a, ctx.config.content)
        f = a.frame
        section = ctx.sections.setdefault("content", {}).setdefault("quality", {})
        section[self.id] = {"name": self.name, "score": self.score, "rule": rule,
                            "flagged": int(mask.sum()), "images": int(len(f)),
                            "rate": float(mask.mean()),
                            "histogram": histogram(score, np.where(mask, "flagged", "other"))}
        if not mask.any():
            return
        cfg = ctx.config.content
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(-score[idx] if self.higher_is_worse else score[idx], kind="stable")]
        per_split = {split_name(s): {"flagged": int((mask & (f["split"] == s)).sum()),
                                     "images": int((f["split"] == s).sum())}
                     for s in sorted(f["split"].unique())}
        per_class, shortcut = class_concentration(f["label"].to_numpy(), mask, cfg)
        examples = [{"path": f["path"].iat[i], "split": split_name(f["split"].iat[i]),
                     "label": f["label"].iat[i], self.score: round(float(score[i]), 4)}
                    for i in idx[:cfg.max_listed]]
        ev: dict[str, Any] = {"flagged": int(mask.sum()), "images": int(len(f)), "rate": float(mask.mean()),
                              "rule": rule, "score": self.score, "per_split": per_split,
                              "per_class": per_class, "images_flagged": examples}
        severity = None
        title = f"{mask.sum()} images {self.what} ({pct(mask.mean(), 2 if mask.mean() < 0.01 else 1)})"
        message = (f"{mask.sum()} of {len(f)} images are {self.what}: {rule}. "
                   + ", ".join(f"{k}: {v['flagged']} of {v['images']}" for k, v in per_split.items()) + ".")
        if shortcut:
            ev["shortcut"] = shortcut
            severity = Severity.WARNING
            title += f", most in class {shortcut['label']!r}"
            message += (f" They gather in class {shortcut['label']!r}: {pct(shortcut['rate'])} of its images "
                        f"against {pct(shortcut['rate_others'])} of the others (Fisher exact p = "
                        f"{shortcut['p_value']:.2g}); a model can learn the flaw as a sign of the class.")
        yield self.finding(title, message, paths=[f["path"].iat[i] for i in idx], evidence=ev,
                           subject=f"quality:{self.name}", severity=severity)


def class_concentration(labels: np.ndarray, mask: np.ndarray, cfg: Any) -> tuple[dict[str, Any], dict | None]:
    """Flag counts per class, and the class where the flags concentrate (None when none does): the
    class with the highest rate, tested against all other classes together (Fisher exact)."""
    per_class: dict[str, Any] = {}
    for c in sorted(set(labels.tolist())):
        in_c = labels == c
        per_class[c] = {"flagged": int((mask & in_c).sum()), "images": int(in_c.sum()),
                        "rate": float(mask[in_c].mean())}
    if len(per_class) < 2 or mask.sum() < MIN_SHORTCUT:
        return per_class, None
    top = max(per_class, key=lambda c: (per_class[c]["rate"], c))
    k, n = per_class[top]["flagged"], per_class[top]["images"]
    k_o, n_o = int(mask.sum()) - k, len(mask) - n
    rate_o = k_o / n_o if n_o else 0.0
    p = hypergeom_sf(k, len(mask), int(mask.sum()), n)   # one-sided Fisher exact
    ratio = per_class[top]["rate"] / rate_o if rate_o > 0 else float("inf")
    if p < cfg.shortcut_p_value and ratio >= cfg.shortcut_min_ratio:
        return per_class, {"label": top, "rate": per_class[top]["rate"], "rate_others": rate_o,
                           "p_value": float(p), "share_of_flagged": k / int(mask.sum())}
    return per_class, None


def low_information(a: ContentAnalysis, cfg: Any) -> np.ndarray:
    """DSA404's rule; a near-constant image is reported there only, not also as blurry or grey."""
    return ((a.frame["entropy"].to_numpy() < cfg.low_info_max_entropy)
            | (a.frame["contrast"].to_numpy() < cfg.low_info_max_contrast))


def _reference_median(a: ContentAnalysis, column: str) -> float:
    return float(np.median(a.frame[column].to_numpy()[a.reference]))


class Threshold(QualityCheck):
    """A flag that is one property on the wrong side of one setting of [tool.dsaudit.content]."""
    setting = ""        # the threshold's name in ContentConfig
    words = ""          # the property in words, for the rule

    def flags(self, a, ctx):
        cut = getattr(ctx.config.content, self.setting)
        s = a.frame[self.score].to_numpy()
        side = "above" if self.higher_is_worse else "below"
        return (s > cut) if self.higher_is_worse else (s < cut), s, f"{self.words} {side} {cut:.2f}"


class TooDark(Threshold):
    """Images that are too dark: even their brightest parts are dark.

    Why: Under-exposed images carry little usable detail; a few are normal, many point to a camera or
    export problem, and when they gather in one class the model can learn darkness as a sign of it.
    Fix: Look at the listed images; re-expose or drop the broken ones, and make sure every class has the
    same range of lighting (or normalise exposure in the input pipeline for training and use alike).
    Thresholds: 95th-percentile grey level below content.dark_max_p95 (default 0.30 of full scale).
    """

    id = "DSA401"
    name = "quality.too-dark"
    severity = Severity.INFO
    score, what = "p95", "too dark"
    setting, words = "dark_max_p95", "95th-percentile grey level"


class TooBright(Threshold):
    """Images that are too bright (washed out): even their darkest parts are bright.

    Why: Over-exposed images lose their detail in the highlights; when they gather in one class the
    model can learn brightness as a sign of it.
    Fix: Look at the listed images; re-expose or drop the broken ones, and check that every class was
    captured under comparable exposure.
    Thresholds: 5th-percentile grey level above content.bright_min_p05 (default 0.75 of full scale).
    """

    id = "DSA402"
    name = "quality.too-bright"
    severity = Severity.INFO
    score, what, higher_is_worse = "p05", "too bright", True
    setting, words = "bright_min_p05", "5th-percentile grey level"


class Blurry(QualityCheck):
    """Blurry images: much less fine detail than the dataset's typical image.

    Why: Blur (motion, focus, heavy upscaling) removes what distinguishes fine-grained classes; when
    blurry images gather in one class (another camera, another source) the model can learn the blur.
    Fix: Look at the listed images; drop or replace the unusable ones, and check whether a class comes
    from a source with other optics or resizing.
    Thresholds: sharpness (std of the Laplacian over the rms gradient of the grey image, at up to 256
    px) below content.blur_ratio (default 0.5) x its median over the train split (all images without
    one).
    """

    id = "DSA403"
    name = "quality.blurry"
    severity = Severity.INFO
    score, what = "sharpness", "blurry"
    # a blank image has no detail at all; it is reported as low information, not as blurry
    relative, leaves_low_information = True, True

    def flags(self, a, ctx):
        ratio = ctx.config.content.blur_ratio
        med = _reference_median(a, "sharpness")
        s = a.frame["sharpness"].to_numpy()
        return s < ratio * med, s, f"sharpness below {ratio:.2f} x the median {med:.3f}"


class LowInformation(QualityCheck):
    """Near-constant images with almost no information (blank, a single colour, a faint trace).

    Why: A blank or near-blank image is usually a failed capture or export; it teaches the model
    nothing except, when such images gather in one class, that blank means that class.
    Fix: Look at the listed images and remove the blank ones (or recover them from the source).
    Thresholds: grey-histogram entropy below content.low_info_max_entropy (default 2.5 bits of 8) or
    grey-level spread below content.low_info_max_contrast (default 0.02 of full scale).
    """

    id = "DSA404"
    name = "quality.low-information"
    severity = Severity.WARNING
    score, what = "entropy", "near-constant (low information)"

    def flags(self, a, ctx):
        cfg = ctx.config.content
        return (low_information(a, cfg), a.frame["entropy"].to_numpy(),
                f"grey entropy below {cfg.low_info_max_entropy:g} bits or spread below "
                f"{cfg.low_info_max_contrast:g}")


class GreyInColour(QualityCheck):
    """Greyscale pictures in a colour dataset (whatever the file's colour mode).

    Why: A grey picture stored as RGB passes every file check, but its channel statistics differ from
    the rest; when grey images gather in one class (an old scanner, another source) the model can
    learn the missing colour instead of the content.
    Fix: Check where the grey images come from; convert the whole dataset to grey if colour does not
    matter, or replace them with colour versions.
    Thresholds: mean channel spread (max - min of R, G, B per pixel) below content.grey_max_chroma
    (default 0.01 of full scale), only when at least content.grey_min_colour_share (default 0.5) of
    the images have colour.
    """

    id = "DSA405"
    name = "quality.greyscale-in-colour"
    severity = Severity.INFO
    score, what = "chroma", "greyscale in a colour dataset"
    leaves_low_information = True

    def flags(self, a, ctx):
        cfg = ctx.config.content
        s = a.frame["chroma"].to_numpy()
        grey = s < cfg.grey_max_chroma
        if (~grey).mean() < cfg.grey_min_colour_share:
            return None   # a greyscale dataset (CT, X-ray): nothing is out of place
        rule = f"mean channel spread below {cfg.grey_max_chroma:g} while {pct((~grey).mean())} are in colour"
        return grey, s, rule


class OddSize(QualityCheck):
    """Images whose size or aspect ratio is far from the dataset's typical image.

    Why: An image many times smaller or larger than the rest, or of another shape, is resized much more
    than the others (blur, squashing); a class that comes at another size gives the model a shortcut.
    Fix: Look at the listed images: drop thumbnails or wrong crops, or crop/pad to the common aspect
    before resizing.
    Thresholds: side (square root of the area) content.odd_size_factor (default 4) times off the median
    of the train split (all images without one), or aspect ratio content.odd_aspect_factor (default 2)
    times off the median aspect.
    """

    id = "DSA406"
    name = "quality.odd-size"
    severity = Severity.INFO
    score, what, higher_is_worse = "size_factor", "of an odd size or shape", True
    relative = True

    def flags(self, a, ctx):
        cfg = ctx.config.content
        side = np.abs(a.frame["log_area"].to_numpy() - _reference_median(a, "log_area")) / 2
        aspect = np.abs(np.log(a.frame["aspect"].to_numpy()) - np.log(_reference_median(a, "aspect")))
        score = np.exp(np.maximum(side, aspect))   # how many times off, in side or in aspect
        mask = (side > np.log(cfg.odd_size_factor)) | (aspect > np.log(cfg.odd_aspect_factor))
        med_side = float(np.exp(_reference_median(a, "log_area") / 2))
        return mask, score, (f"side {cfg.odd_size_factor:g}x off the median {med_side:.0f} px or aspect "
                             f"{cfg.odd_aspect_factor:g}x off the median {_reference_median(a, 'aspect'):.2f}")


CHECKS = [TooDark, TooBright, Blurry, LowInformation, GreyInColour, OddSize]
