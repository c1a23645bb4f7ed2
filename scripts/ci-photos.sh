#!/usr/bin/env bash
# Writes DIR/<variant>/<digit file>: the 38 example digits in 8 variants (PNG and JPEG, mirrored, rotated,
# negative, blurred, enlarged, framed), 304 images, plus DIR/png/broken.png, which is not an image: 305 inputs
# for the CI tests of sharding. Uses the checkout's sharp (after npm ci).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
(cd "$repo" && node --input-type=module - "$out") <<'EOF'
import sharp from 'sharp';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
const out = process.argv[2];
const variants = {
  png: { ext: 'png', make: (s) => s.png() },
  jpeg: { ext: 'jpg', make: (s) => s.jpeg({ quality: 85 }) },
  mirrored: { ext: 'png', make: (s) => s.flop().png() },
  rotated: { ext: 'png', make: (s) => s.rotate(90).png() },
  negative: { ext: 'png', make: (s) => s.negate({ alpha: false }).png() },
  blurred: { ext: 'jpg', make: (s) => s.blur(1).jpeg({ quality: 90 }) },
  large: { ext: 'png', make: (s) => s.resize(96, 96).png() },
  framed: { ext: 'jpg', make: (s) => s.extend({ top: 6, bottom: 6, left: 6, right: 6, background: '#000' }).jpeg() },
};
const digits = readdirSync('examples/digits').filter((f) => f.endsWith('.png')).sort();
for (const [name, { ext, make }] of Object.entries(variants)) {
  mkdirSync(join(out, name), { recursive: true });
  for (const f of digits) await make(sharp(join('examples/digits', f))).toFile(join(out, name, f.replace(/\.png$/, `.${ext}`)));
}
EOF
echo 'not an image' >"$out/png/broken.png"
n=$(find "$out" -type f | wc -l)
[ "$n" -eq 305 ] || { echo "ci-photos: made $n files, expected 305" >&2; exit 1; }
