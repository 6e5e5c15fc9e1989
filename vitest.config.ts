import { defineConfig } from "vitest/config";

// Unit and integration tests live in <package>/test; cluster tests start real processes from the
// built dist/ code, so `npm test` builds first.
export default defineConfig({
  test: {
    include: ["*/test/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
