"""How much a clip moves: stage 2 keeps only clips whose speaker gestures.

Two scorers: frame-difference motion energy (no model, the default) and DWPose arm/hand keypoint
displacement (a whole-body ONNX model, when its weights are given).
"""

import numpy as np


def motion_energy(frames: np.ndarray, size: int = 64) -> float:
    """Mean absolute difference of consecutive grey frames (0..1), on a `size`-pixel grid.

    A cheap, dependency-free stand-in for pose motion: static talking heads score ~0.005,
    gesturing speakers several times more. Subsampled so a 704x1280 clip costs milliseconds.
    """
    f, h, w, _ = frames.shape
    sy, sx = max(1, h // size), max(1, w // size)
    grey = frames[:, ::sy, ::sx].astype(np.float32).mean(axis=3) / 255.0
    if f < 2:
        return 0.0
    return float(np.abs(np.diff(grey, axis=0)).mean())


class DWPoseMotion:
    """Arm and hand keypoint motion with DWPose's whole-body model (ONNX, onnxruntime).

    The clip is assumed to show one speaker: the whole frame is the person box (no detector),
    letterboxed to the model's 288x384 input; SimCC outputs are decoded by argmax (split 2.0).
    Score: mean displacement per frame of confident arm (COCO 5-10) and hand (91-132)
    keypoints, as a fraction of the image diagonal, on every `stride`-th frame.
    """

    ARM_HAND = list(range(5, 11)) + list(range(91, 133))

    def __init__(self, model_path: str, stride: int = 5, min_score: float = 0.3) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        _, _, self.in_h, self.in_w = self.input.shape
        self.stride = stride
        self.min_score = min_score

    def keypoints(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        scale = min(self.in_w / w, self.in_h / h)
        from PIL import Image

        img = np.asarray(Image.fromarray(frame).resize((round(w * scale), round(h * scale))))
        canvas = np.zeros((self.in_h, self.in_w, 3), dtype=np.float32)
        canvas[: img.shape[0], : img.shape[1]] = img
        x = (canvas - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
        simcc_x, simcc_y = self.session.run(
            None, {self.input.name: x.transpose(2, 0, 1)[None].astype(np.float32)}
        )
        px, py = simcc_x[0].argmax(-1) / 2.0, simcc_y[0].argmax(-1) / 2.0
        score = np.minimum(simcc_x[0].max(-1), simcc_y[0].max(-1))
        return np.stack([px, py], -1) / scale, score

    def __call__(self, frames: np.ndarray) -> float:
        pts = [self.keypoints(f) for f in frames[:: self.stride]]
        diag = float(np.hypot(*frames.shape[1:3]))
        moves = []
        for (a, sa), (b, sb) in zip(pts, pts[1:]):
            ok = (sa[self.ARM_HAND] > self.min_score) & (sb[self.ARM_HAND] > self.min_score)
            if ok.any():
                d = np.linalg.norm(a[self.ARM_HAND] - b[self.ARM_HAND], axis=-1)[ok]
                moves.append(d.mean() / diag / self.stride)
        return float(np.mean(moves)) if moves else 0.0
