// hashing.js: SHA-256 (and SM3) of a File in the browser, shared by verify.html and deposit.html.
// Not served on its own: service/api/pages.py inlines it at a page's include line for it, inside the
// page's own <script> (so the served page, and a copy saved from it, stays one self-contained file that works from
// file:// with no network, and its Content-Security-Policy hash covers the inlined code).
// WebCrypto has no incremental SHA-256, so files too big to hold in memory are hashed with this one, in slices.
// What SHA-256 and SM3 share: 64-byte blocks, the same Merkle-Damgard padding (0x80, zeros, the bit length as a
// 64-bit big-endian number) and a state of eight 32-bit words written out big-endian. A subclass gives the initial
// state (this.h) and compress(data, offset).
class BlockHash {
  constructor(initial, scheduleWords) {
    this.h = Uint32Array.from(initial);
    this.block = new Uint8Array(64);
    this.fill = 0;
    this.length = 0;
    this.w = new Uint32Array(scheduleWords);
  }
  update(data) {
    let i = 0;
    this.length += data.length;
    if (this.fill) {
      const take = Math.min(64 - this.fill, data.length);
      this.block.set(data.subarray(0, take), this.fill);
      this.fill += take;
      i = take;
      if (this.fill < 64) return this;
      this.compress(this.block, 0);
      this.fill = 0;
    }
    for (; i + 64 <= data.length; i += 64) this.compress(data, i);
    if (i < data.length) { this.block.set(data.subarray(i)); this.fill = data.length - i; }
    return this;
  }
  digest() {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.fill < 56 ? 56 : 120) - this.fill) + 8);
    pad[0] = 0x80;
    const dv = new DataView(pad.buffer);
    dv.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    dv.setUint32(pad.length - 4, bits >>> 0);
    this.length -= pad.length;  // padding is not message length
    this.update(pad);
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    this.h.forEach((v, k) => ov.setUint32(4 * k, v));
    return out;
  }
}

class Sha256Stream extends BlockHash {
  constructor() {
    super([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19], 64);
  }
  compress(data, off) {
    const K = Sha256Stream.K, w = this.w, h = this.h;
    for (let t = 0; t < 16; t++) {
      const j = off + 4 * t;
      w[t] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let t = 16; t < 64; t++) {
      const a = w[t - 15], b = w[t - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
}
Sha256Stream.K = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

const HASH_SLICE = 8 * 1024 * 1024;
const WHOLE_FILE_LIMIT = 256 * 1024 * 1024;

// SHA-256 of a File: WebCrypto in one go up to WHOLE_FILE_LIMIT bytes, else Sha256Stream over 8 MiB slices.
async function hashFile(file, onProgress, wholeLimit = WHOLE_FILE_LIMIT) {
  if (file.size <= wholeLimit) {
    onProgress && onProgress(0, file.size);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
    onProgress && onProgress(file.size, file.size);
    return digest;
  }
  const stream = new Sha256Stream();
  for (let off = 0; off < file.size; off += HASH_SLICE) {
    const part = new Uint8Array(await file.slice(off, off + HASH_SLICE).arrayBuffer());
    stream.update(part);
    onProgress && onProgress(Math.min(off + HASH_SLICE, file.size), file.size);
  }
  return stream.digest();
}

// SM3 (GB/T 32905-2016), for the SM3 digests of receipt format v2 (SPEC §2.1; step 1). Written here, not
// vendored: no audited JavaScript SM3 is published, and a hash has no secret to leak, so what matters is that
// it is right. tests/browser check it against OpenSSL's SM3 (hashlib) on the standard's examples and on random
// inputs of every length around the block and padding boundaries, and on multi-slice files.
class Sm3Stream extends BlockHash {
  constructor() {
    super([0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e], 68);
  }
  compress(data, at) {
    const w = this.w, v = this.h, rotl = sm3Rotl;
    for (let j = 0; j < 16; j++) {
      const o = at + 4 * j;
      w[j] = (data[o] << 24) | (data[o + 1] << 16) | (data[o + 2] << 8) | data[o + 3];
    }
    for (let j = 16; j < 68; j++) {
      const x = w[j - 16] ^ w[j - 9] ^ rotl(w[j - 3], 15);
      w[j] = x ^ rotl(x, 15) ^ rotl(x, 23) ^ rotl(w[j - 13], 7) ^ w[j - 6];
    }
    let a = v[0] | 0, b = v[1] | 0, c = v[2] | 0, d = v[3] | 0, e = v[4] | 0, f = v[5] | 0, g = v[6] | 0, h = v[7] | 0;
    for (let j = 0; j < 64; j++) {
      const a12 = rotl(a, 12);
      const ss1 = rotl((a12 + e + SM3_T[j]) | 0, 7);
      const ss2 = ss1 ^ a12;
      const ff = j < 16 ? a ^ b ^ c : (a & b) | (a & c) | (b & c);
      const gg = j < 16 ? e ^ f ^ g : (e & f) | (~e & g);
      const tt1 = (ff + d + ss2 + (w[j] ^ w[j + 4])) | 0;
      const tt2 = (gg + h + ss1 + w[j]) | 0;
      d = c; c = rotl(b, 9); b = a; a = tt1;
      h = g; g = rotl(f, 19); f = e; e = tt2 ^ rotl(tt2, 9) ^ rotl(tt2, 17);
    }
    v[0] ^= a; v[1] ^= b; v[2] ^= c; v[3] ^= d; v[4] ^= e; v[5] ^= f; v[6] ^= g; v[7] ^= h;
  }
}

function sm3Rotl(x, n) { return (x << n) | (x >>> (32 - n)); }
// T_j rotated left by j mod 32 (GB/T 32905 §5.3.3), precomputed.
const SM3_T = Int32Array.from({ length: 64 }, (_, j) => sm3Rotl(j < 16 ? 0x79cc4519 : 0x7a879d8a, j % 32));

// SM3 of a File, read in HASH_SLICE slices (there is no SM3 in WebCrypto).
async function sm3File(file, onProgress) {
  const stream = new Sm3Stream();
  for (let off = 0; off < file.size; off += HASH_SLICE) {
    stream.update(new Uint8Array(await file.slice(off, off + HASH_SLICE).arrayBuffer()));
    onProgress && onProgress(Math.min(off + HASH_SLICE, file.size), file.size);
  }
  return stream.digest();
}
