// The local serving container's environment, as far as handler.py's limits go (issue #13 item 2).
import { describe, expect, it } from "vitest";
import { handlerLimitsEnv } from "../../src/backends/local/serving.ts";

describe("handlerLimitsEnv", () => {
  it("passes a configured GPU preset and the local client's 600 s as the time limit", () => {
    const env = handlerLimitsEnv({ PATH: "/bin" }, "t4");
    expect(env).toEqual({ PATH: "/bin", AVATAR_GPU: "t4", AVATAR_PREDICT_TIMEOUT_S: "600" });
  });

  it("drops an inherited AVATAR_GPU when the preset is only the default: the handler detects the card", () => {
    const env = handlerLimitsEnv({ PATH: "/bin", AVATAR_GPU: "l4" }, undefined);
    expect(env.AVATAR_GPU).toBeUndefined();
    expect(env.AVATAR_PREDICT_TIMEOUT_S).toBe("600");
  });

  it("keeps a time limit the user set", () => {
    expect(handlerLimitsEnv({ AVATAR_PREDICT_TIMEOUT_S: "90" }, "l4")).toEqual({ AVATAR_PREDICT_TIMEOUT_S: "90", AVATAR_GPU: "l4" });
  });
});
