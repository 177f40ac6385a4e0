"""Knowledge distillation (Hinton et al. 2015, https://arxiv.org/abs/1503.02531).

Usage::

    loss = distillation_loss(student_logits, teacher_logits, labels, temperature=4, alpha=0.9)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor,
                      labels: torch.Tensor | None, *, temperature: float, alpha: float,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """``alpha · T² · KL(p_teacher^T ‖ p_student^T) + (1 − alpha) · CE(student, labels)``.

    The T² factor keeps the soft term's gradients on the scale of the hard term's.
    Rows whose label is negative (unlabeled images) get the soft term only; with
    ``labels=None`` every row is unlabeled.
    """
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise ValueError(f"need temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}")
    # float32 even under bfloat16 autocast, which on the CPU leaves log_softmax in the
    # logits' bfloat16: the soft term compares two close distributions
    student, teacher = student.float(), teacher.float()
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1),
                    F.log_softmax(teacher.detach() / temperature, dim=1),
                    reduction="none", log_target=True).sum(1) * temperature**2
    if labels is None:
        return soft.mean()
    labeled = labels >= 0
    hard = torch.zeros_like(soft)
    if labeled.any():
        hard[labeled] = F.cross_entropy(student[labeled], labels[labeled],
                                        label_smoothing=label_smoothing, reduction="none")
    weight = torch.where(labeled, torch.full_like(soft, alpha), torch.ones_like(soft))
    return (weight * soft + (1 - alpha) * labeled.float() * hard).mean()
