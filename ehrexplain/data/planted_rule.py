"""The planted rule that labels a synthetic cohort, and the cut that turns its scores into labels.

Both the synthetic cohorts (:mod:`.synthetic`) and the MIMIC-IV-shaped writer (:mod:`.mimic4`)
label patients with a :class:`PlantedRule`; this module is the one place the rule lives.

Example:
    >>> rule = PlantedRule()
    >>> rule.score({"E11.9", "I50.9"})
    3.5
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlantedRule:
    """The hidden rule that labels a cohort: a sparse linear score over codes.

    score = sum of present risk-code weights + ``interaction_weight`` when both
    interaction codes are present + ``protective_weight`` when the protective
    code is present. Confounders raise nothing: they only co-occur with risk.

    Example:
        >>> rule = PlantedRule()
        >>> rule.score({"E11.9", "I10"}), sorted(rule.drivers({"E11.9", "I10"}))
        (1.5, ['E11.9'])
    """

    risk_codes: dict[str, float] = field(default_factory=lambda: {"E11.9": 1.5, "I50.9": 2.0, "N18.3": 1.5})
    interaction: tuple[str, str] = ("C09AA02", "C03DA01")  # ACE inhibitor + spironolactone: hyperkalaemia
    interaction_weight: float = 2.0
    protective_code: str = "C10AA05"
    protective_weight: float = -1.5
    confounders: tuple[str, ...] = ("I10", "E78.5")
    noise: float = 0.5
    prevalence: float = 0.3

    def __post_init__(self):
        if not 0.0 < self.prevalence < 1.0:
            raise ValueError(f"prevalence must be in (0, 1), got {self.prevalence}; e.g. PlantedRule(prevalence=0.3)")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0 (std of the logistic noise), got {self.noise}")

    def score(self, codes) -> float:
        """Noise-free risk score of a set of codes (no intercept).

        Example:
            >>> PlantedRule().score(["C09AA02", "C03DA01", "C10AA05"])
            0.5
        """
        codes = set(codes)
        total = sum(w for code, w in self.risk_codes.items() if code in codes)
        if set(self.interaction) <= codes:
            total += self.interaction_weight
        if self.protective_code in codes:
            total += self.protective_weight
        return float(total)

    def drivers(self, codes) -> set[str]:
        """Codes of a patient that move its score; confounders never do.

        Example:
            >>> sorted(PlantedRule().drivers(["C09AA02", "E78.5", "N18.3"]))
            ['N18.3']
        """
        codes = set(codes)
        found = {code for code in self.risk_codes if code in codes}
        if set(self.interaction) <= codes:
            found |= set(self.interaction)
        if self.protective_code in codes:
            found.add(self.protective_code)
        return found

    @property
    def planted(self) -> set[str]:
        """Every code the rule mentions, confounders included."""
        return {*self.risk_codes, *self.interaction, self.protective_code, *self.confounders}



def label_threshold(scores: list[float], prevalence: float) -> float:
    """Cut halfway between the scores ranked k and k+1, k = prevalence * n.

    Example:
        >>> label_threshold([3.0, 1.0, 2.0, 0.0], prevalence=0.5)
        1.5
    """
    ranked = sorted(scores, reverse=True) + [min(scores) - 1.0]  # sentinel for n == 1
    k = min(max(round(prevalence * len(scores)), 1), max(len(scores) - 1, 1))
    return (ranked[k - 1] + ranked[k]) / 2


__all__ = ["PlantedRule", "label_threshold"]
