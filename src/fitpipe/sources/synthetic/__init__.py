"""The synthetic source: wearipedia's Fitbit generator, for demos, tests and benchmarks.

- `source`: the declarations and the fetch (one generated day, with wear gaps and sync lag);
- `parse`: the Fitbit Web API shaped payloads as rows;
- `wear_gaps`: the seeded non-wear stretches.

Needs the `synthetic` extra (wearipedia).
"""
