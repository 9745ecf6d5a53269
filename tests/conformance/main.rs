//! Parser conformance outside the loghub corpus: a table of real-world lines per format with
//! the record parts each must give (`table`), and instruction-count speed drivers (`speed`).
//! One test binary of its own, so it needs none of the agent's integration harness.

mod speed;
mod table;
