;; trivial - the benchmark's plugin: on_message allows everything, doing nothing.
;; It still honours the ABI: nexus_input hands out a buffer for each call's input (growing
;; memory when the input is larger than what is there), nexus_alloc is never needed but exists.
(module
  (memory (export "memory") 1)

  ;; input buffers start at 1 KiB (0 would mean "cannot"); bump allocation, reset per call
  (global $top (mut i32) (i32.const 1024))

  (func $alloc (param $n i32) (result i32)
    (local $p i32) (local $end i64) (local $have i64)
    (local.set $p (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $n))))
    (if (i64.gt_u (local.get $end) (i64.const 0xFFFFFFFF)) (then (return (i32.const 0))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.wrap_i64
                  (i64.shr_u (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 65535))
                             (i64.const 16))))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $top (i32.wrap_i64 (local.get $end)))
    (local.get $p))

  (func (export "nexus_input") (param $len i32) (result i32)
    (global.set $top (i32.const 1024))
    (call $alloc (local.get $len)))

  (func (export "nexus_alloc") (param $len i32) (result i32)
    (call $alloc (local.get $len)))

  ;; 0 = no output = allow
  (func (export "on_message") (param $ptr i32) (param $len i32) (result i64)
    (i64.const 0))
)
