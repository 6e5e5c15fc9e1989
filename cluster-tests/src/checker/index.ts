// Checkers: what a test reads back after its faults, and what it must find.
export * from "./replicas.js";
