"""What each metric of a comparison table is, how it is computed, and which way is better:
the labels and footnotes every table and export prints."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricProtocol:
    name: str  # stable: stored in the database and the exports
    label: str
    features: str  # the extractor: "inception" or "clip"
    higher_is_better: bool
    protocol: str


PROTOCOLS = {
    protocol.name: protocol
    for protocol in (
        MetricProtocol(
            "clip_score", "CLIP score", "clip", True,
            "region CLIP score (Paint-by-Example's evaluation): output cropped to the mask's bounding box, "
            "crop and reference resized to 224 x 224 (bicubic), CLIP ViT-B/32 image embeddings, 100 x cosine; "
            "mean over samples (each sample's value the mean over its seeds)",
        ),
        MetricProtocol(
            "fid", "FID", "inception", False,
            "FID, clean-fid mode \"clean\" (Inception-v3 pool features, PIL bicubic resize to 299 x 299 in float); "
            "generated: the method's outputs; real: the dataset's ground truths at the canvas",
        ),
        MetricProtocol(
            "fid_clip", "CLIP-FID", "clip", False,
            "Frechet distance on CLIP ViT-B/32 image embeddings (Paint-by-Example's \"FID\"); "
            "generated: the method's outputs; real: the dataset's ground truths at the canvas",
        ),
        MetricProtocol(
            "kid", "KID", "inception", False,
            "KID, clean-fid's: unbiased MMD^2, cubic polynomial kernel on Inception features, mean and "
            "standard deviation over random subsets",
        ),
    )
}
