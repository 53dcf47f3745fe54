"""A minimal rewardkit plugin: one reward and one trainer hook."""
