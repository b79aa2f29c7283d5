"""Evaluation: frame/video mAP (ACT and VOC conventions), mask and DAVIS J&F, temporal metrics.

Pure numpy. See docs/evaluation.md for the conventions.
"""

from sparselabel.evaluation.ap import average_precision, greedy_match, pr_curve
from sparselabel.evaluation.boxes import (
    CONVENTIONS,
    box_area,
    spatial_iou,
    temporal_iou,
    tube_iou,
    tube_iou_matrix,
)
from sparselabel.evaluation.external import (
    evaluate_external,
    format_table,
    load_act_gt,
    load_frame_dets,
    load_tube_dets,
)
from sparselabel.evaluation.frame_map import frame_map
from sparselabel.evaluation.masks import (
    boundary_f,
    db_statistics,
    evaluate_sequence,
    evaluate_vos,
    frame_map_masks,
    jaccard,
    mask_iou,
    mask_tube_iou,
    seg2bmap,
    split_objects,
    video_map_masks,
)
from sparselabel.evaluation.nms import nms_boxes, nms_frame_dets, nms_tube_dets, nms_tubes
from sparselabel.evaluation.temporal import (
    Segment,
    clip_f1,
    frame_accuracy,
    frame_labels,
    segment_accuracy,
    segment_iou,
    segments_from_gttubes,
    segments_from_tube_dets,
    temporal_localization_precision,
    temporal_metrics,
)
from sparselabel.evaluation.video_map import video_map

__all__ = [
    "CONVENTIONS",
    "Segment",
    "average_precision",
    "boundary_f",
    "box_area",
    "clip_f1",
    "db_statistics",
    "evaluate_external",
    "evaluate_sequence",
    "evaluate_vos",
    "format_table",
    "frame_accuracy",
    "frame_labels",
    "frame_map",
    "frame_map_masks",
    "greedy_match",
    "jaccard",
    "load_act_gt",
    "load_frame_dets",
    "load_tube_dets",
    "mask_iou",
    "mask_tube_iou",
    "nms_boxes",
    "nms_frame_dets",
    "nms_tube_dets",
    "nms_tubes",
    "pr_curve",
    "seg2bmap",
    "segment_accuracy",
    "segment_iou",
    "segments_from_gttubes",
    "segments_from_tube_dets",
    "spatial_iou",
    "split_objects",
    "temporal_iou",
    "temporal_localization_precision",
    "temporal_metrics",
    "tube_iou",
    "tube_iou_matrix",
    "video_map",
    "video_map_masks",
]
