;; echo-bot - an on_event observer: for each committed message from a human whose body starts
;; with "echo ", post "echo: <rest>" into the same room.
;;
;; The input is {"tenant":T,"events":[record,...]}, read in one pass. The walker below reads
;; one object level at a time (skipping nested values and strings, escapes included), so a key
;; is only ever found at the level it belongs to: "type", "sender_kind", "body", "id" and
;; "room" of the record itself, never inside its meta. Whitespace between tokens is allowed.
;;
;; The post is built from raw input bytes: the room's JSON string as it is, and the rest of the
;; body still escaped (it starts right after the plain `"echo ` and runs to the closing quote),
;; so the new JSON is valid without decoding anything. The body must start with the five
;; plain bytes `echo ` (as orjson writes them; an escaped `\u0065cho ` is not recognised).
;;
;; client_msg_id is "echo-<event id>": a batch delivered again posts nothing twice. At most 16
;; posts per call (the host's limit): past that the rest of the batch is logged and dropped,
;; not retried (a retry would hit the same limit at the same place).
(module
  (import "nexus" "post" (func $post (param i32 i32) (result i32)))
  (import "nexus" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)

  ;; constants (address, length)
  (data (i32.const 64) "\"events\"")                      ;; 8
  (data (i32.const 80) "\"type\"")                        ;; 6
  (data (i32.const 96) "\"message\"")                     ;; 9
  (data (i32.const 112) "\"sender_kind\"")                ;; 13
  (data (i32.const 128) "\"human\"")                      ;; 7
  (data (i32.const 144) "\"body\"")                       ;; 6
  (data (i32.const 160) "\"echo ")                        ;; 6 (the start of a body value)
  (data (i32.const 176) "\"id\"")                         ;; 4
  (data (i32.const 192) "\"room\"")                       ;; 6
  (data (i32.const 208) "{\"room\":")                     ;; 8
  (data (i32.const 224) ",\"body\":\"echo: ")             ;; 15
  (data (i32.const 256) ",\"client_msg_id\":\"echo-")     ;; 23
  (data (i32.const 288) "\"}")                            ;; 2
  (data (i32.const 320) "echo-bot: could not parse the event batch")          ;; 41
  (data (i32.const 384) "echo-bot: post refused: bad input (-1)")             ;; 38
  (data (i32.const 448) "echo-bot: post refused: room not allowed (-2)")      ;; 45
  (data (i32.const 512)
    "echo-bot: the host's posts-per-call cap is reached, the rest is not echoed (-3)") ;; 79
  (data (i32.const 608) "echo-bot: post failed")                             ;; 21
  (data (i32.const 640) "echo-bot: out of memory, an event was not echoed")   ;; 48

  ;; key tables for $walk: entries of 16 bytes [key ptr, key len, value start, value end]
  (global $TOP i32 (i32.const 1024))   ;; 1 entry: "events"
  (global $EV i32 (i32.const 1056))    ;; 5 entries: type, sender_kind, body, id, room

  ;; the arena: bump allocation from 4 KiB; the input area first, scratch reset by each hook
  (global $HEAP i32 (i32.const 4096))
  (global $top (mut i32) (i32.const 4096))

  ;; the result of the last post (0 = nothing posted)
  (global $rc (mut i32) (i32.const 0))

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

  ;; the input area: at the arena's start, kept across calls (the host asks again only
  ;; for a bigger one); each hook's scratch starts after it
  (global $inend (mut i32) (i32.const 4096))

  (func (export "nexus_input") (param $len i32) (result i32)
    (local $p i32)
    (global.set $top (global.get $HEAP))
    (local.set $p (call $alloc (local.get $len)))
    (global.set $inend (global.get $top))
    (local.get $p))

  (func (export "nexus_alloc") (param $len i32) (result i32)
    (call $alloc (local.get $len)))

  ;; ---- scanning ----------------------------------------------------------------------------

  (func $is_ws (param $c i32) (result i32)
    (i32.or (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
            (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))

  ;; skip whitespace from p (p <= e)
  (func $ws (param $p i32) (param $e i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $e)))
        (br_if $done (i32.eqz (call $is_ws (i32.load8_u (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $p))

  ;; p at '"': the position after the closing quote, 0 if unterminated
  (func $skip_str (param $p i32) (param $e i32) (result i32)
    (local $c i32)
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (loop $next
      (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.eq (local.get $c) (i32.const 34)) ;; "
        (then (return (i32.add (local.get $p) (i32.const 1)))))
      (if (i32.eq (local.get $c) (i32.const 92)) ;; \ : skip the escaped byte too
        (then (local.set $p (i32.add (local.get $p) (i32.const 1)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $next))
    (unreachable))

  ;; p at a value: the position after it, 0 if malformed (containers matched by depth)
  (func $skip_val (param $p i32) (param $e i32) (result i32)
    (local $c i32) (local $depth i32) (local $start i32)
    (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
    (local.set $c (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 34))
      (then (return (call $skip_str (local.get $p) (local.get $e)))))
    (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
      (then
        (loop $next
          (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 34))
            (then
              (local.set $p (call $skip_str (local.get $p) (local.get $e)))
              (if (i32.eqz (local.get $p)) (then (return (i32.const 0))))
              (br $next)))
          (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
            (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 125)) (i32.eq (local.get $c) (i32.const 93)))
            (then
              (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
              (if (i32.eqz (local.get $depth))
                (then (return (i32.add (local.get $p) (i32.const 1)))))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next))))
    ;; a scalar: up to , } ] : or whitespace; empty = malformed
    (local.set $start (local.get $p))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $e)))
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.eq (local.get $c) (i32.const 44)))
        (br_if $done (i32.eq (local.get $c) (i32.const 125)))
        (br_if $done (i32.eq (local.get $c) (i32.const 93)))
        (br_if $done (i32.eq (local.get $c) (i32.const 58)))
        (br_if $done (call $is_ws (local.get $c)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (select (local.get $p) (i32.const 0) (i32.gt_u (local.get $p) (local.get $start))))

  ;; the n bytes at a equal the n bytes at b
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $differ
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                               (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; the value span [s, e) is exactly the n bytes at lit
  (func $is (param $s i32) (param $e i32) (param $lit i32) (param $n i32) (result i32)
    (if (result i32) (i32.eq (i32.sub (local.get $e) (local.get $s)) (local.get $n))
      (then (call $eq (local.get $s) (local.get $lit) (local.get $n)))
      (else (i32.const 0))))

  (func $set_key (param $entry i32) (param $kptr i32) (param $klen i32)
    (i32.store (local.get $entry) (local.get $kptr))
    (i32.store offset=4 (local.get $entry) (local.get $klen))
    (i32.store offset=8 (local.get $entry) (i32.const 0))
    (i32.store offset=12 (local.get $entry) (i32.const 0)))

  ;; Walk the object at p (whitespace first allowed) up to e: for each member whose raw key
  ;; (quotes included) is in the table, store its value span. Returns the position after the
  ;; closing }, 0 if malformed. With $stop set it returns at the first wanted key instead, with
  ;; the value's start (its end is not looked for, and stays 0 in the table).
  (func $walk (param $p i32) (param $e i32) (param $tab i32) (param $n i32) (param $stop i32)
              (result i32)
    (local $ks i32) (local $ke i32) (local $vs i32) (local $ve i32) (local $i i32) (local $ent i32)
    (local $hit i32) (local $c i32)
    ;; clear the spans
    (local.set $i (i32.const 0))
    (block $cleared
      (loop $clear
        (br_if $cleared (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $ent (i32.add (local.get $tab) (i32.shl (local.get $i) (i32.const 4))))
        (i32.store offset=8 (local.get $ent) (i32.const 0))
        (i32.store offset=12 (local.get $ent) (i32.const 0))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $clear)))
    (local.set $p (call $ws (local.get $p) (local.get $e)))
    (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
    (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 123)) (then (return (i32.const 0))))
    (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1)) (local.get $e)))
    (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 125))
      (then (return (i32.add (local.get $p) (i32.const 1)))))
    (loop $member
      ;; "key"
      (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
      (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 34)) (then (return (i32.const 0))))
      (local.set $ks (local.get $p))
      (local.set $ke (call $skip_str (local.get $p) (local.get $e)))
      (if (i32.eqz (local.get $ke)) (then (return (i32.const 0))))
      ;; :
      (local.set $p (call $ws (local.get $ke) (local.get $e)))
      (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
      (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 58)) (then (return (i32.const 0))))
      (local.set $vs (call $ws (i32.add (local.get $p) (i32.const 1)) (local.get $e)))
      ;; wanted?
      (local.set $hit (i32.const 0))
      (local.set $i (i32.const 0))
      (block $matched
        (loop $try
          (br_if $matched (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $ent (i32.add (local.get $tab) (i32.shl (local.get $i) (i32.const 4))))
          (if (call $is (local.get $ks) (local.get $ke)
                        (i32.load (local.get $ent)) (i32.load offset=4 (local.get $ent)))
            (then
              (local.set $hit (local.get $ent))
              (i32.store offset=8 (local.get $ent) (local.get $vs))
              (br $matched)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $try)))
      (if (i32.and (local.get $stop) (i32.ne (local.get $hit) (i32.const 0)))
        (then (return (local.get $vs))))
      ;; value
      (local.set $ve (call $skip_val (local.get $vs) (local.get $e)))
      (if (i32.eqz (local.get $ve)) (then (return (i32.const 0))))
      (if (local.get $hit) (then (i32.store offset=12 (local.get $hit) (local.get $ve))))
      ;; , or }
      (local.set $p (call $ws (local.get $ve) (local.get $e)))
      (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (i32.const 0))))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.eq (local.get $c) (i32.const 125))
        (then (return (i32.add (local.get $p) (i32.const 1)))))
      (if (i32.ne (local.get $c) (i32.const 44)) (then (return (i32.const 0))))
      (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1)) (local.get $e)))
      (br $member))
    (unreachable))

  ;; ---- echoing -----------------------------------------------------------------------------

  ;; copy n bytes from src to dst, return dst + n
  (func $put (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $n))
    (i32.add (local.get $dst) (local.get $n)))

  ;; The record at s (e: end of input): post its echo if it is one. Returns the position after
  ;; the record (0 if malformed); the post's result goes to $rc (0 when nothing was posted).
  (func $handle (param $s i32) (param $e i32) (result i32)
    (local $room_s i32) (local $room_e i32) (local $body_s i32) (local $body_e i32)
    (local $id_s i32) (local $id_e i32) (local $mark i32) (local $buf i32) (local $w i32)
    (local $end i32)
    (global.set $rc (i32.const 0))
    (local.set $end (call $walk (local.get $s) (local.get $e) (global.get $EV) (i32.const 5)
                                (i32.const 0)))
    (if (i32.eqz (local.get $end)) (then (return (i32.const 0))))
    ;; "type":"message"
    (if (i32.eqz (call $is (i32.load offset=1064 (i32.const 0)) (i32.load offset=1068 (i32.const 0))
                           (i32.const 96) (i32.const 9)))
      (then (return (local.get $end))))
    ;; "sender_kind":"human"
    (if (i32.eqz (call $is (i32.load offset=1080 (i32.const 0)) (i32.load offset=1084 (i32.const 0))
                           (i32.const 128) (i32.const 7)))
      (then (return (local.get $end))))
    ;; "body":"echo ...
    (local.set $body_s (i32.load offset=1096 (i32.const 0)))
    (local.set $body_e (i32.load offset=1100 (i32.const 0)))
    (if (i32.lt_u (i32.sub (local.get $body_e) (local.get $body_s)) (i32.const 7))
      (then (return (local.get $end))))
    (if (i32.eqz (call $eq (local.get $body_s) (i32.const 160) (i32.const 6)))
      (then (return (local.get $end))))
    ;; "id" and "room" must be strings
    (local.set $id_s (i32.load offset=1112 (i32.const 0)))
    (local.set $id_e (i32.load offset=1116 (i32.const 0)))
    (local.set $room_s (i32.load offset=1128 (i32.const 0)))
    (local.set $room_e (i32.load offset=1132 (i32.const 0)))
    (if (i32.lt_u (i32.sub (local.get $id_e) (local.get $id_s)) (i32.const 2))
      (then (return (local.get $end))))
    (if (i32.ne (i32.load8_u (local.get $id_s)) (i32.const 34)) (then (return (local.get $end))))
    (if (i32.lt_u (i32.sub (local.get $room_e) (local.get $room_s)) (i32.const 2))
      (then (return (local.get $end))))
    (if (i32.ne (i32.load8_u (local.get $room_s)) (i32.const 34)) (then (return (local.get $end))))

    ;; {"room":<room>,"body":"echo: <rest of body>,"client_msg_id":"echo-<id>"}
    (local.set $mark (global.get $top))
    (local.set $buf
      (call $alloc
        (i32.add
          (i32.add (i32.sub (local.get $room_e) (local.get $room_s))
                   (i32.sub (local.get $body_e) (local.get $body_s)))
          (i32.add (i32.sub (local.get $id_e) (local.get $id_s)) (i32.const 64)))))
    (if (i32.eqz (local.get $buf))
      (then
        (call $log (i32.const 2) (i32.const 640) (i32.const 48))
        (return (local.get $end))))
    (local.set $w (call $put (local.get $buf) (i32.const 208) (i32.const 8)))
    (local.set $w (call $put (local.get $w) (local.get $room_s)
                             (i32.sub (local.get $room_e) (local.get $room_s))))
    (local.set $w (call $put (local.get $w) (i32.const 224) (i32.const 15)))
    (local.set $w (call $put (local.get $w) (i32.add (local.get $body_s) (i32.const 6))
                             (i32.sub (local.get $body_e) (i32.add (local.get $body_s) (i32.const 6)))))
    (local.set $w (call $put (local.get $w) (i32.const 256) (i32.const 23)))
    (local.set $w (call $put (local.get $w) (i32.add (local.get $id_s) (i32.const 1))
                             (i32.sub (local.get $id_e) (i32.add (local.get $id_s) (i32.const 2)))))
    (local.set $w (call $put (local.get $w) (i32.const 288) (i32.const 2)))
    (global.set $rc (call $post (local.get $buf) (i32.sub (local.get $w) (local.get $buf))))
    (global.set $top (local.get $mark)) ;; the host copied the post: give the memory back
    (if (i32.eq (global.get $rc) (i32.const -1))
      (then (call $log (i32.const 2) (i32.const 384) (i32.const 38))))
    (if (i32.eq (global.get $rc) (i32.const -2))
      (then (call $log (i32.const 2) (i32.const 448) (i32.const 45))))
    (if (i32.eq (global.get $rc) (i32.const -3))
      (then (call $log (i32.const 2) (i32.const 512) (i32.const 79))))
    (if (i32.lt_s (global.get $rc) (i32.const -3))
      (then (call $log (i32.const 2) (i32.const 608) (i32.const 21))))
    (local.get $end))

  (func $bad_batch (result i64)
    (call $log (i32.const 2) (i32.const 320) (i32.const 41))
    (i64.const 0))

  (func (export "on_event") (param $ptr i32) (param $len i32) (result i64)
    (local $e i32) (local $p i32) (local $next i32) (local $c i32)
    (global.set $top (global.get $inend))  ;; the last call's scratch is free again
    (local.set $e (i32.add (local.get $ptr) (local.get $len)))
    (call $set_key (global.get $TOP) (i32.const 64) (i32.const 8))
    (call $set_key (i32.const 1056) (i32.const 80) (i32.const 6))    ;; type
    (call $set_key (i32.const 1072) (i32.const 112) (i32.const 13))  ;; sender_kind
    (call $set_key (i32.const 1088) (i32.const 144) (i32.const 6))   ;; body
    (call $set_key (i32.const 1104) (i32.const 176) (i32.const 4))   ;; id
    (call $set_key (i32.const 1120) (i32.const 192) (i32.const 6))   ;; room
    ;; "events": [ ... ] - the walk stops at its value, each record is read once below
    (drop (call $walk (local.get $ptr) (local.get $e) (global.get $TOP) (i32.const 1)
                      (i32.const 1)))
    (local.set $p (i32.load offset=1032 (i32.const 0)))
    (if (i32.eqz (local.get $p)) (then (return (call $bad_batch))))
    (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 91)) (then (return (call $bad_batch))))
    (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1)) (local.get $e)))
    (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (call $bad_batch))))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 93)) (then (return (i64.const 0)))) ;; []
    (loop $record
      (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 123))
        (then (local.set $next (call $handle (local.get $p) (local.get $e))))
        (else
          (global.set $rc (i32.const 0))
          (local.set $next (call $skip_val (local.get $p) (local.get $e)))))
      (if (i32.eqz (local.get $next)) (then (return (call $bad_batch))))
      (if (i32.eq (global.get $rc) (i32.const -3)) (then (return (i64.const 0))))
      (local.set $p (call $ws (local.get $next) (local.get $e)))
      (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (call $bad_batch))))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.eq (local.get $c) (i32.const 93)) (then (return (i64.const 0))))
      (if (i32.ne (local.get $c) (i32.const 44)) (then (return (call $bad_batch))))
      (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1)) (local.get $e)))
      (if (i32.ge_u (local.get $p) (local.get $e)) (then (return (call $bad_batch))))
      (br $record))
    (unreachable))
)
