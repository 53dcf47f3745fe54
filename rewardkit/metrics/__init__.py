"""``evaluate`` metric modules shipped with rewardkit (load them by path; the Hub is not needed)."""
