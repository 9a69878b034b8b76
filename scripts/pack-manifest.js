#!/usr/bin/env node
// The packed package.json leaves out `prepare`: it builds a fresh clone on `npm install`, but in an installed
// tarball (already built) npm 11 would only warn about it on every palette install. `strip` runs before
// packing, `restore` after, and a strip left behind by a failed pack is undone by the next restore.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const manifest = path.join(__dirname, '..', 'package.json');
const saved = path.join(__dirname, '..', '.package.json.unpacked');
const step = process.argv[2];

if (step === 'strip') {
  if (!fs.existsSync(saved)) fs.copyFileSync(manifest, saved);
  const pkg = JSON.parse(fs.readFileSync(saved, 'utf8'));
  delete pkg.scripts.prepare;
  fs.writeFileSync(manifest, JSON.stringify(pkg, null, 2) + '\n');
} else if (step === 'restore') {
  if (fs.existsSync(saved)) fs.renameSync(saved, manifest);
} else {
  console.error('usage: pack-manifest.js strip|restore');
  process.exit(2);
}
