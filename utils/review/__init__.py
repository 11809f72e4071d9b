"""Clinician review of AI outputs: a SQL store with an audit trail, and its exports.

No Streamlit here: :mod:`helpers.review` and the Review page use this package.
"""

from utils.review.export import (
    audit_frame,
    reviews_csv,
    reviews_frame,
    reviews_from_json,
    reviews_json,
)
from utils.review.masks import check_mask, decode_mask_png, encode_mask_png, mask_from_image_bytes
from utils.review.records import AuditEntry, Review
from utils.review.store import ReviewStore
from utils.review.validation import (
    BIRADS_CATEGORIES,
    REVIEW_CLASSES,
    AiSnapshot,
    ReviewInput,
    normalise_birads,
)

__all__ = [
    "BIRADS_CATEGORIES",
    "REVIEW_CLASSES",
    "AiSnapshot",
    "AuditEntry",
    "Review",
    "ReviewInput",
    "ReviewStore",
    "audit_frame",
    "check_mask",
    "decode_mask_png",
    "encode_mask_png",
    "mask_from_image_bytes",
    "normalise_birads",
    "reviews_csv",
    "reviews_frame",
    "reviews_from_json",
    "reviews_json",
]
