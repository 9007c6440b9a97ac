// Pure face math (core/faces): similarity, consensus, likeness, spread.
import { describe, expect, it } from "vitest";
import { consensusEmbedding, cosineSimilarity, likeness, medoidIndex, normalizeEmbedding, spread } from "../../src/core/faces.ts";

const v = (...values: number[]) => Float32Array.from(values);

describe("cosineSimilarity", () => {
  it.each([
    ["identical", [1, 2, 3], [1, 2, 3], 1],
    ["scaled", [1, 2, 3], [2, 4, 6], 1],
    ["opposite", [1, 0], [-1, 0], -1],
    ["orthogonal", [1, 0], [0, 1], 0],
    ["45 degrees", [1, 0], [1, 1], Math.SQRT1_2],
    ["a zero vector", [0, 0], [1, 1], 0],
  ])("%s", (_, a, b, expected) => {
    expect(cosineSimilarity(a, b)).toBeCloseTo(expected, 6);
  });

  it("refuses vectors of different lengths", () => {
    expect(() => cosineSimilarity([1], [1, 2])).toThrow(/lengths differ/);
  });
});

describe("normalizeEmbedding", () => {
  it.each([
    [[3, 4], [0.6, 0.8]],
    [[0, 0], [0, 0]],
    [[-2], [-1]],
  ])("%j -> %j", (input, expected) => {
    expect([...normalizeEmbedding(input)].map((x) => Number(x.toFixed(6)))).toEqual(expected);
  });
});

describe("medoidIndex and consensusEmbedding", () => {
  // Four vectors near the x axis (one person) and two near the y axis (someone else).
  const person = [v(1, 0.05), v(1, -0.05), v(1, 0.1), v(1, 0)];
  const other = [v(0.1, 1), v(-0.1, 1)];

  it("the medoid is a member of the majority even when the minority comes first", () => {
    const set = [...other, ...person];
    expect(medoidIndex(set)).toBeGreaterThanOrEqual(2);
  });

  it("the consensus ignores a minority of other faces", () => {
    const consensus = consensusEmbedding([...other, ...person]);
    expect(cosineSimilarity(consensus, v(1, 0))).toBeGreaterThan(0.99);
    // A plain mean is pulled towards the other person.
    const mean = normalizeEmbedding([...other, ...person].reduce((sum, e) => sum.map((x, i) => x + e[i]!), [0, 0]));
    expect(cosineSimilarity(mean, v(1, 0))).toBeLessThan(0.95);
  });

  it("a single embedding is its own consensus", () => {
    expect([...consensusEmbedding([v(0, 2)])]).toEqual([0, 1]);
  });

  it("refuses an empty set", () => {
    expect(() => consensusEmbedding([])).toThrow(/no embeddings/);
  });
});

describe("likeness and spread", () => {
  it.each([
    ["same direction", [1, 0], [[1, 0], [2, 0]], 1],
    ["half similar", [1, 0], [[1, 0], [0, 1]], 0.5],
  ])("likeness: %s", (_, embedding, references, expected) => {
    expect(likeness(embedding, references)).toBeCloseTo(expected, 6);
  });

  it("likeness without references is NaN", () => {
    expect(likeness([1, 0], [])).toBeNaN();
  });

  it.each([
    ["one photo", [[1, 0]], 0],
    ["identical photos", [[1, 0], [1, 0], [1, 0]], 0],
    ["two orthogonal", [[1, 0], [0, 1]], 1],
  ])("spread: %s", (_, set, expected) => {
    expect(spread(set)).toBeCloseTo(expected, 6);
  });
});
