//! Cranelift translator for hot guest code (not yet built: see the JIT issue).
