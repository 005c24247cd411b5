;; misbehaving-membomb: on_message grows memory one page at a time until memory.grow fails
;; (the host's memory_pages limit), then writes a byte into every 4 KiB of it so the pages are
;; really committed, and returns no output. A host without a memory limit gets to 4 GiB.
(module
  (memory (export "memory") 1)

  ;; nexus_input: one input buffer at 1 KiB, memory grown to fit it
  (func (export "nexus_input") (param $len i32) (result i32)
    (local $pages i64)
    (local.set $pages
      (i64.shr_u (i64.add (i64.extend_i32_u (local.get $len)) (i64.const 66559)) (i64.const 16)))
    (if (i64.gt_u (local.get $pages) (i64.extend_i32_u (memory.size)))
      (then
        (if (i32.eq (memory.grow (i32.wrap_i64 (i64.sub (local.get $pages)
                                                        (i64.extend_i32_u (memory.size)))))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1024))

  ;; no host function answers are ever needed
  (func (export "nexus_alloc") (param $len i32) (result i32) (i32.const 0))

  (func (export "on_message") (param $ptr i32) (param $len i32) (result i64)
    (local $p i64) (local $end i64)
    (block $full
      (loop $grow
        (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    (local.set $end (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (block $done
      (loop $touch
        (br_if $done (i64.ge_u (local.get $p) (local.get $end)))
        (i32.store8 (i32.wrap_i64 (local.get $p)) (i32.const 1))
        (local.set $p (i64.add (local.get $p) (i64.const 4096)))
        (br $touch)))
    (i64.const 0))
)
