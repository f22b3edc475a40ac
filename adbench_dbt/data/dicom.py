"""Multi-frame Breast Tomosynthesis DICOM: read single frames, read headers, write volumes, apply the VOI window.

A BCS-DBT volume is one JPEG 2000 multi-frame file of 50-80 frames; decoding all of it takes seconds, so the
reader decodes only the frames it is asked for (pydicom 3 `iter_pixels(indices=...)` seeks with the offset table).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import iter_pixels
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from adbench_dbt.data.errors import DataError
from adbench_dbt.data.layout import BREAST_TOMOSYNTHESIS_SOP_CLASS, VIEWS
from adbench_dbt.io import atomic_path


@dataclass(frozen=True)
class VolumeHeader:
    """What the split and the manifest need from a volume, read without touching the pixel data."""

    rows: int
    cols: int
    n_frames: int
    window_center: float
    window_width: float
    bits_stored: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str
    study_uid: str
    laterality: str
    view_position: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols


def split_view(view: str) -> tuple[str, str]:
    """'rmlo' -> ('R', 'MLO'); unknown codes are an error because laterality drives the orientation."""
    if view not in VIEWS:
        raise DataError(f"unknown view code {view!r}: expected one of {', '.join(VIEWS)}")
    return view[0].upper(), view[1:].upper()


def write_volume(path: Path, frames: np.ndarray, *, patient_id: str, study_uid: str, view: str,
                 window_center: float, window_width: float, bits_stored: int = 10) -> None:
    """Write `frames` (uint16 F x H x W, raw stored orientation) as a JPEG 2000 lossless Breast Tomosynthesis file.

    Laid out like the BCS-DBT download (window in the shared functional groups, laterality/view tags), so the
    phantom and the tests exercise the same code path as the real data.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint16:
        raise DataError(f"{path}: write_volume expects uint16 frames F x H x W, got {frames.dtype} {frames.shape}")
    if frames.size and int(frames.max()) >= 1 << bits_stored:
        raise DataError(f"{path}: pixel value {int(frames.max())} does not fit in Bits Stored {bits_stored}")
    laterality, view_position = split_view(view)
    n_frames, rows, cols = frames.shape
    # UIDs are hashed from the volume's identity, so rewriting a volume gives the same bytes (and fingerprint).
    study_instance_uid = generate_uid(entropy_srcs=[patient_id, study_uid, "study"])
    series_uid, instance_uid = (generate_uid(entropy_srcs=[patient_id, study_uid, view, which])
                                for which in ("series", "instance"))

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BREAST_TOMOSYNTHESIS_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = BREAST_TOMOSYNTHESIS_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyID = study_uid[:16]
    ds.AccessionNumber = study_uid[:16]
    ds.StudyDescription = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.ImageLaterality = laterality
    ds.ViewPosition = view_position
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = n_frames
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    voi = Dataset()
    voi.WindowCenter = f"{float(window_center):g}"
    voi.WindowWidth = f"{float(window_width):g}"
    shared = Dataset()
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.compress(JPEG2000Lossless, np.ascontiguousarray(frames), encoding_plugin="pylibjpeg",
                generate_instance_uid=False)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def read_header(path: Path) -> VolumeHeader:
    """Header of a DBT volume; raises DataError naming the file when it is missing, truncated or not DBT."""
    path = Path(path)
    ds = _read_dataset(path)
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != BREAST_TOMOSYNTHESIS_SOP_CLASS:
        raise DataError(f"{path}: SOP class {sop_class or '<missing>'} is not Breast Tomosynthesis Image Storage "
                        f"({BREAST_TOMOSYNTHESIS_SOP_CLASS})")
    if "NumberOfFrames" not in ds or int(ds.NumberOfFrames or 0) < 1:
        raise DataError(f"{path}: not a multi-frame volume (Number of Frames missing)")
    for keyword in ("Rows", "Columns", "BitsStored"):
        if keyword not in ds:
            raise DataError(f"{path}: missing DICOM attribute {keyword}")
    center, width = _window(ds, path)
    return VolumeHeader(
        rows=int(ds.Rows), cols=int(ds.Columns), n_frames=int(ds.NumberOfFrames),
        window_center=center, window_width=width, bits_stored=int(ds.BitsStored), sop_class_uid=sop_class,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", "")),
        patient_id=str(ds.get("PatientID", "")), study_uid=str(ds.get("StudyInstanceUID", "")),
        laterality=str(ds.get("ImageLaterality", "")), view_position=str(ds.get("ViewPosition", "")))


def read_frames(path: Path, frames: Sequence[int]) -> np.ndarray:
    """Raw uint16 frames F' x H x W in the order asked, decoding only those frames."""
    path = Path(path)
    header = read_header(path)
    wanted = [int(f) for f in frames]
    bad = [f for f in wanted if not 0 <= f < header.n_frames]
    if bad:
        raise DataError(f"{path}: frame index {bad[0]} outside the volume (it has {header.n_frames} frames)")
    unique = sorted(set(wanted))
    out = np.empty((len(unique), header.rows, header.cols), np.uint16)
    try:
        with warnings.catch_warnings():
            # The BCS-DBT codestreams declare 16 bits while Bits Stored is 10: harmless, reported by the decoder.
            warnings.filterwarnings("ignore", message=".*[Bb]its [Ss]tored.*")
            warnings.filterwarnings("ignore", message=".*precision.*")
            for slot, frame in enumerate(iter_pixels(path, indices=unique)):
                out[slot] = frame
    except Exception as exc:  # pydicom/openjpeg raise many types for truncated or corrupt pixel data
        raise DataError(f"{path}: cannot decode frames {unique}: {exc}") from exc
    index = {f: slot for slot, f in enumerate(unique)}
    return out[[index[f] for f in wanted]]


def apply_window(raw: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map [center - width/2, center + width/2] linearly onto [0, 1] (float32), clipping outside."""
    if not width > 0:
        raise DataError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    out = (np.asarray(raw, np.float32) - np.float32(low)) * np.float32(1.0 / width)
    return np.clip(out, 0.0, 1.0, out=out)


def _read_dataset(path: Path) -> Dataset:
    if not path.is_file():
        raise DataError(f"{path}: DICOM file not found")
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from exc


def _window(ds: Dataset, path: Path) -> tuple[float, float]:
    """Window from Shared Functional Groups -> Frame VOI LUT, else the first per-frame group, else top level."""
    for group_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(group_keyword) or []
        if groups and "FrameVOILUTSequence" in groups[0] and groups[0].FrameVOILUTSequence:
            return _center_width(groups[0].FrameVOILUTSequence[0], path)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return _center_width(ds, path)
    raise DataError(f"{path}: no window center/width (SharedFunctionalGroupsSequence > FrameVOILUTSequence)")


def _center_width(item: Dataset, path: Path) -> tuple[float, float]:
    try:
        center, width = item.WindowCenter, item.WindowWidth
        # Multi-valued windows list alternatives; the first is the default presentation.
        center = center[0] if isinstance(center, MultiValue) else center
        width = width[0] if isinstance(width, MultiValue) else width
        return float(center), float(width)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: malformed window center/width ({exc})") from exc
