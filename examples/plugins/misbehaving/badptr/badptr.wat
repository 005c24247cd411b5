;; misbehaving-badptr: nexus_input always returns 0 ("cannot"), which counts as a fault: the
;; host must not write the input anywhere, nor call the hook.
(module
  (memory (export "memory") 1)

  (func (export "nexus_input") (param $len i32) (result i32) (i32.const 0))
  (func (export "nexus_alloc") (param $len i32) (result i32) (i32.const 0))

  ;; never reached
  (func (export "on_message") (param $ptr i32) (param $len i32) (result i64)
    (i64.const 0))
)
