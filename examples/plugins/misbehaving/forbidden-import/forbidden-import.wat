;; misbehaving-forbidden-import: imports nexus.post while its manifest does not declare the
;; "post" capability. The host must refuse to install it (and so never run it); if it did run,
;; on_message would post into "general" and allow the message.
(module
  (import "nexus" "post" (func $post (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{\"room\":\"general\",\"body\":\"posted without the post capability\"}")

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
    (drop (call $post (i32.const 64) (i32.const 62)))
    (i64.const 0))
)
