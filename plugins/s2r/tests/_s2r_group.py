"""The small S²R group the reward and trainer tests share (gold answer 14)."""

from rewardkit_s2r.parse import format_trajectory

W = "Therefore, the answer is incorrect."
C = "Therefore, the answer is correct."
# t1: wrong, caught, fixed, confirmed. t2: right, confirmed. t3: wrong, wrongly confirmed.
# t4: wrong, caught, still wrong, no verdict (last -> default "correct", which is wrong)
GROUP = [
    format_trajectory(["5 + 9 = 13. \\boxed{13}", "5 + 9 = 14. \\boxed{14}"], ["13 - 9 = 4. " + W, "14 - 9 = 5. " + C]),
    format_trajectory(["\\boxed{14}"], [C]),
    format_trajectory(["\\boxed{12}"], [C]),
    format_trajectory(["\\boxed{12}", "\\boxed{15}"], [W, "hmm"]),
]
GOLD = ["14"] * 4
