;; PIL's separable convolution (src/io/images.ts: resampleHorizontal, resampleVertical) with 128-bit SIMD,
;; over 8-bit RGB images (HWC, interleaved) in this module's memory. The arithmetic is the JS's, op for op:
;; an int32 accumulator starting at 2^21 plus the sum of pixel × 22-bit weight, then clip8. clip8 is an
;; arithmetic shift by 22 followed by two saturating narrows (i32 → i16 signed, i16 → u8 unsigned): an
;; accumulator <= 0 shifts to 0 or -1 and saturates to 0, one >= 256 · 2^22 shifts to >= 256 and saturates
;; to 255, anything between is acc >> 22 — exactly clip8.
;;
;; Both passes read and write whole vectors (4 bytes per pixel, 16 per row chunk), past the last byte they
;; use: the caller (src/io/resample-wasm.ts) leaves 16 bytes of slack after every image. A store that spills
;; past the end of an output row lands on bytes that are written later, or in that slack.
;;
;; Taps are three i32 arrays as in the Taps interface: start[out], count[out], weights[out * ksize].
(module
  (memory (export "memory") 1)

  ;; 2^21, the rounding half of PIL's 22-bit fixed point.
  (global $HALF v128 (v128.const i32x4 0x200000 0x200000 0x200000 0x200000))

  ;; Convolve along x: [h, w, 3] at $src → [h, outW, 3] at $dst. Rows go in pairs that share each pixel's
  ;; taps (weights are loaded once for both); when h is odd the last row is paired with itself.
  (func (export "horizontal")
    (param $src i32) (param $w i32) (param $h i32) (param $dst i32) (param $outW i32)
    (param $start i32) (param $count i32) (param $weights i32) (param $ksize i32)
    (local $stride i32) (local $outStride i32) (local $y i32) (local $row i32) (local $out i32)
    (local $paired i32) (local $nextRow i32) (local $nextOut i32)
    (local $x i32) (local $p i32) (local $wp i32) (local $n i32) (local $wk v128)
    (local $acc0 v128) (local $acc1 v128) (local $clipped v128)
    (if (i32.or (i32.eqz (local.get $h)) (i32.eqz (local.get $outW))) (then (return)))
    (local.set $stride (i32.mul (local.get $w) (i32.const 3)))
    (local.set $outStride (i32.mul (local.get $outW) (i32.const 3)))
    (loop $rows
      (local.set $row (i32.add (local.get $src) (i32.mul (local.get $y) (local.get $stride))))
      (local.set $out (i32.add (local.get $dst) (i32.mul (local.get $y) (local.get $outStride))))
      ;; Offsets of the pair's second row, in the source and in the output.
      (local.set $paired (i32.lt_u (i32.add (local.get $y) (i32.const 1)) (local.get $h)))
      (local.set $nextRow (select (local.get $stride) (i32.const 0) (local.get $paired)))
      (local.set $nextOut (select (local.get $outStride) (i32.const 0) (local.get $paired)))
      (local.set $x (i32.const 0))
      (loop $cols
        (local.set $p (i32.add (local.get $row)
          (i32.mul (i32.load (i32.add (local.get $start) (i32.shl (local.get $x) (i32.const 2)))) (i32.const 3))))
        (local.set $n (i32.load (i32.add (local.get $count) (i32.shl (local.get $x) (i32.const 2)))))
        (local.set $wp (i32.add (local.get $weights)
          (i32.shl (i32.mul (local.get $x) (local.get $ksize)) (i32.const 2))))
        (local.set $acc0 (global.get $HALF))
        (local.set $acc1 (global.get $HALF))
        (if (local.get $n)
          (then
            (loop $taps
              (local.set $wk (v128.load32_splat (local.get $wp)))
              (local.set $acc0 (i32x4.add (local.get $acc0)
                (i32x4.mul (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero align=1 (local.get $p)))) (local.get $wk))))
              (local.set $acc1 (i32x4.add (local.get $acc1)
                (i32x4.mul (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero align=1 (i32.add (local.get $p) (local.get $nextRow))))) (local.get $wk))))
              (local.set $p (i32.add (local.get $p) (i32.const 3)))
              (local.set $wp (i32.add (local.get $wp) (i32.const 4)))
              (br_if $taps (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))
        ;; clip8 of both pixels: bytes 0..3 from the first row, 4..7 from the second.
        (local.set $clipped (i16x8.narrow_i32x4_s
          (i32x4.shr_s (local.get $acc0) (i32.const 22)) (i32x4.shr_s (local.get $acc1) (i32.const 22))))
        (local.set $clipped (i8x16.narrow_i16x8_u (local.get $clipped) (local.get $clipped)))
        ;; The second row's pixel as 4 bytes: the 4th is overwritten by the next pixel, by the next pair of
        ;; rows, or falls in the slack. The first row's as 3, since at the row's end its 4th byte would land
        ;; on the second row's first pixel, already written.
        (i32.store align=1 (i32.add (local.get $out) (local.get $nextOut)) (i32x4.extract_lane 1 (local.get $clipped)))
        (v128.store16_lane align=1 0 (local.get $out) (local.get $clipped))
        (v128.store8_lane offset=2 2 (local.get $out) (local.get $clipped))
        (local.set $out (i32.add (local.get $out) (i32.const 3)))
        (br_if $cols (i32.lt_u (local.tee $x (i32.add (local.get $x) (i32.const 1))) (local.get $outW))))
      (br_if $rows (i32.lt_u (local.tee $y (i32.add (local.get $y) (i32.const 2))) (local.get $h)))))

  ;; Convolve along y: [h, w, 3] at $src → [outH, w, 3] at $dst, 16 bytes of a row at a time. start[y] counts
  ;; rows from $src.
  (func (export "vertical")
    (param $src i32) (param $w i32) (param $dst i32) (param $outH i32)
    (param $start i32) (param $count i32) (param $weights i32) (param $ksize i32)
    (local $stride i32) (local $y i32) (local $base i32) (local $n i32) (local $wrow i32)
    (local $j i32) (local $p i32) (local $wp i32) (local $k i32)
    (local $v v128) (local $wk v128) (local $lo v128) (local $hi v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $stride (i32.mul (local.get $w) (i32.const 3)))
    (if (i32.or (i32.eqz (local.get $stride)) (i32.eqz (local.get $outH))) (then (return)))
    (loop $rows
      (local.set $base (i32.add (local.get $src)
        (i32.mul (i32.load (i32.add (local.get $start) (i32.shl (local.get $y) (i32.const 2)))) (local.get $stride))))
      (local.set $n (i32.load (i32.add (local.get $count) (i32.shl (local.get $y) (i32.const 2)))))
      (local.set $wrow (i32.add (local.get $weights)
        (i32.shl (i32.mul (local.get $y) (local.get $ksize)) (i32.const 2))))
      (local.set $j (i32.const 0))
      (loop $chunks
        (local.set $a0 (global.get $HALF))
        (local.set $a1 (global.get $HALF))
        (local.set $a2 (global.get $HALF))
        (local.set $a3 (global.get $HALF))
        (local.set $p (i32.add (local.get $base) (local.get $j)))
        (local.set $wp (local.get $wrow))
        (local.set $k (local.get $n))
        (if (local.get $k)
          (then
            (loop $taps
              ;; 16 bytes of one source row, widened u8 → i16 → i32 into 4 vectors of 4 lanes.
              (local.set $v (v128.load align=1 (local.get $p)))
              (local.set $wk (v128.load32_splat (local.get $wp)))
              (local.set $lo (i16x8.extend_low_i8x16_u (local.get $v)))
              (local.set $hi (i16x8.extend_high_i8x16_u (local.get $v)))
              (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $lo)) (local.get $wk))))
              (local.set $a1 (i32x4.add (local.get $a1) (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $lo)) (local.get $wk))))
              (local.set $a2 (i32x4.add (local.get $a2) (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $hi)) (local.get $wk))))
              (local.set $a3 (i32x4.add (local.get $a3) (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $hi)) (local.get $wk))))
              (local.set $p (i32.add (local.get $p) (local.get $stride)))
              (local.set $wp (i32.add (local.get $wp) (i32.const 4)))
              (br_if $taps (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))))
        ;; clip8 of 16 accumulators (see the top of this file); past the row's end the bytes spill into the
        ;; next output row, which is written after this one.
        (v128.store align=1 (i32.add (local.get $dst) (local.get $j))
          (i8x16.narrow_i16x8_u
            (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a0) (i32.const 22)) (i32x4.shr_s (local.get $a1) (i32.const 22)))
            (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a2) (i32.const 22)) (i32x4.shr_s (local.get $a3) (i32.const 22)))))
        (br_if $chunks (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 16))) (local.get $stride))))
      (local.set $dst (i32.add (local.get $dst) (local.get $stride)))
      (br_if $rows (i32.lt_u (local.tee $y (i32.add (local.get $y) (i32.const 1))) (local.get $outH))))))
