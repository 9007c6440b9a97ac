"""Per-instance parameters (Vertex batch prediction: one JSONL line = one instance, its own seed).

A batch job groups lines into requests as Vertex likes; each line carries its parameters, so a line
gives the same image whichever request it lands in, and the same image as an online request with
the same seed.
"""

from __future__ import annotations

import base64

import pytest

FAST = {"steps": 1, "guidance": 0, "width": 256, "height": 256, "num_images": 1}


def parse(handler_module, data):
    return handler_module.parse_request(data, default_width=512, default_height=512, trigger="sks person")


def test_instance_parameters_merge_over_the_request(handler_module):
    request = parse(handler_module, {
        "instances": [{"prompt": "a", "parameters": {"seed": 7, "steps": 2.0}}, {"prompt": "b", "parameters": {"seed": 8, "steps": 2}}],
        "parameters": {"steps": 5, "format": "png"},
    })
    assert [i.get("seed") for i in request["instances"]] == [7, 8]
    params = request["parameters"]
    assert (params["steps"], params["format"], params["width"]) == (2, "png", 512)


def test_instances_without_their_own_seed_use_the_request_seed(handler_module):
    request = parse(handler_module, {"instances": [{"prompt": "a"}, {"prompt": "b", "parameters": {"seed": 3}}], "parameters": {"seed": 9}})
    assert request["instances"][0] == {"prompt": "a", "negative_prompt": None}
    assert request["instances"][1]["seed"] == 3
    assert request["parameters"]["seed"] == 9


def test_only_the_parameters_of_the_request_no_instance_has_its_own(handler_module):
    request = parse(handler_module, {"instances": [{"prompt": "a", "parameters": {"seed": 1}}], "parameters": None})
    params = request["parameters"]
    assert params["steps"] == 30 and isinstance(params["seed"], int)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"instances": [{"prompt": "a", "parameters": {"steps": 2}}, {"prompt": "b", "parameters": {"steps": 3}}]},
         "instances[1].parameters differ from instances[0]'s"),
        ({"instances": [{"prompt": "a", "parameters": {"steps": 2}}, {"prompt": "b"}], "parameters": {"steps": 3}},
         "instances of one request may differ in seed only"),
        ({"instances": [{"prompt": "a", "parameters": {"steps": 0}}]}, "instances[0].parameters.steps must be between 1 and 100"),
        ({"instances": [{"prompt": "a", "parameters": {"num_inference_steps": 2}}]},
         "unknown key 'num_inference_steps' in instances[0].parameters (did you mean 'steps'?)"),
        ({"instances": [{"prompt": "a", "parameters": [1]}]}, "instances[0].parameters must be an object, got list"),
        ({"instances": [{"prompt": "a", "parameters": {"width": 260}}]}, "parameters.width must be a multiple of 8"),
        ({"instances": [{"prompt": "a", "style": 1}]}, "allowed: prompt, negative_prompt, parameters"),
    ],
)
def test_bad_instance_parameters_are_refused_naming_the_field(handler_module, data, fragment):
    with pytest.raises(ValueError) as info:
        parse(handler_module, data)
    assert fragment in str(info.value)


def test_a_batch_line_gives_the_online_image_of_its_seed(sd15_handler):
    online = [sd15_handler({"instances": [{"prompt": "{avatar} smiling"}], "parameters": dict(FAST, seed=s)})["predictions"][0]
              for s in (11, 12)]
    batch = sd15_handler({
        "instances": [{"prompt": "{avatar} smiling", "parameters": dict(FAST, seed=s)} for s in (11, 12)],
        "parameters": {k: v for k, v in FAST.items() if k != "seed"},
    })["predictions"]
    assert [p["seed"] for p in batch] == [11, 12]
    assert [base64.b64decode(p["image_b64"]) for p in batch] == [base64.b64decode(p["image_b64"]) for p in online]
    # Without the job's parameters reaching the container, the line's own are enough.
    alone = sd15_handler({"instances": [{"prompt": "{avatar} smiling", "parameters": dict(FAST, seed=12)}]})["predictions"][0]
    assert base64.b64decode(alone["image_b64"]) == base64.b64decode(online[1]["image_b64"])
