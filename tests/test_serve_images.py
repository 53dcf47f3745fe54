"""rewardkit serve with images: real loopback servers; data URLs, base64 and paths under --data-root
reach rewards that declare image columns, and a vision PRM scores the same remotely as locally."""

from __future__ import annotations

import base64
import io
from typing import ClassVar

import httpx
import pytest
import torch

from rewardkit import Reward
from rewardkit.prm import PRMReward, RemoteScorer
from rewardkit.prm.multimodal import ImagePrompt, VisionTaggedScorer
from rewardkit.reward import Sample
from rewardkit.serve import RemoteReward, RewardServer, ServerConfig, start_server
from rewardkit.testing import tiny_images
from rewardkit.vision import encode_image


class ImageWidth(Reward):
    """The width of the row's image plus its top-left red value / 1000 (a PIL image must arrive)."""

    image_columns: ClassVar[tuple[str, ...]] = ("image",)

    def score(self, sample: Sample):
        img = sample.row["image"]
        return img.size[0] + img.getpixel((0, 0))[0] / 1000


class RawColumn(Reward):
    """Declares no image column: what the client sent arrives untouched."""

    def score(self, sample: Sample):
        return float(len(sample.row["image"]))


def _png(width: int, red: int = 7) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, 4), (red, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "maps").mkdir()
    (root / "maps" / "a.png").write_bytes(_png(30, red=9))
    (tmp_path_factory.mktemp("outside") / "secret.png").write_bytes(_png(5))
    srv = RewardServer({"width": ImageWidth(name="width"), "raw": RawColumn(name="raw")},
                       ServerConfig(max_wait_ms=5, data_root=str(root)))
    with start_server(srv) as handle:
        yield handle, root


def test_images_arrive_decoded_in_every_declared_form(image_server):
    server, root = image_server
    b64 = base64.b64encode(_png(12)).decode()
    images = [f"data:image/png;base64,{b64}", {"base64": b64}, "maps/a.png", {"path": "maps/a.png"},
              str(root / "maps" / "a.png")]
    got = RemoteReward(server.url, "width")(["p"] * 5, ["c"] * 5, image=images)
    assert got == [pytest.approx(v) for v in (12.007, 12.007, 30.009, 30.009, 30.009)]
    # a reward that declares no image column gets the raw text
    assert RemoteReward(server.url, "raw")(["p"], ["c"], image=["maps/a.png"]) == [10.0]


@pytest.mark.parametrize("bad,why", [("../secret.png", "outside"), ("/etc/hostname", "outside"),
                                     ("maps/missing.png", "not a file"), ("data:image/png;base64,@@", "base64"),
                                     (f"data:image/png;base64,{base64.b64encode(b'not a png').decode()}", "PIL"),
                                     ({"url": "http://x"}, "base64' or 'path"), (3, "data URL")])
def test_bad_images_are_refused_with_the_row_and_column(image_server, bad, why):
    server, _ = image_server
    r = httpx.post(server.url + "/v1/score", json={"reward": "width", "prompts": ["p", "p"], "completions": ["c", "c"],
                                                   "columns": {"image": [encode_image(tiny_images(1)[0]), bad]}})
    assert r.status_code == 422, r.text
    assert why in r.json()["error"] and "row 1" in r.json()["error"]


def test_paths_need_a_data_root():
    srv = RewardServer({"width": ImageWidth(name="width")}, ServerConfig(max_wait_ms=5, workers="thread"))
    with start_server(srv) as server:
        r = httpx.post(server.url + "/v1/score", json={"reward": "width", "prompts": ["p"], "completions": ["c"],
                                                       "columns": {"image": ["a.png"]}})
        assert r.status_code == 422 and "--data-root" in r.json()["error"]
        ok = RemoteReward(server.url, "width")(["p"], ["c"], image=[encode_image(tiny_images(1, size=(20, 8))[0])])
        assert ok[0] == pytest.approx(20, abs=1)


def test_a_vision_prm_scores_the_same_over_http(tiny_vlm_path):
    torch.set_num_threads(1)
    img = tiny_images(1)[0]
    local_scorer = VisionTaggedScorer(str(tiny_vlm_path))
    steps = [["2 + 3 = 5.", "The answer is 5."]]
    want = local_scorer.score([ImagePrompt("What is 2 + 3?", [img])], steps)
    reward = PRMReward(VisionTaggedScorer(str(tiny_vlm_path)), splitter="line", reducer="min", name="vprm")
    assert reward.image_columns == ("image", "images")
    srv = RewardServer({"vprm": reward}, ServerConfig(max_wait_ms=5, workers="thread"))
    with start_server(srv) as server:
        r = httpx.post(server.url + "/v1/steps/vprm",
                       json={"prompts": ["What is 2 + 3?"], "steps": steps, "images": [[encode_image(img)]]})
        assert r.status_code == 200, r.text
        assert torch.allclose(torch.tensor(r.json()["scores"]), torch.tensor(want), atol=1e-5)
        chat = [{"role": "user", "content": [{"type": "image", "image": encode_image(img)},
                                             {"type": "text", "text": "What is 2 + 3?"}]}]
        remote = RemoteReward(server.url, "vprm")([chat], ["2 + 3 = 5.\nThe answer is 5."])
        assert remote[0] == pytest.approx(min(want[0]), abs=1e-5)
        # a client-side PRMReward over the step endpoint sends the row's image with it
        client = PRMReward(RemoteScorer(server.url + "/v1/steps/vprm", takes_images=True), splitter="line",
                           reducer="min", name="remote_vprm")
        via_client = client([chat], ["2 + 3 = 5.\nThe answer is 5."])
        assert via_client[0] == pytest.approx(min(want[0]), abs=1e-5)
        without = PRMReward(RemoteScorer(server.url + "/v1/steps/vprm"), splitter="line", reducer="min", name="t")
        assert without([chat], ["2 + 3 = 5.\nThe answer is 5."])[0] != pytest.approx(min(want[0]), abs=1e-5)
