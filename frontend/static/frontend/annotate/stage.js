// Drawing a pair: sizing both images alike, the synchronised loupe, flicker, and the defect chips.

const LOUPE_ZOOM = 4;
const FLICKER_MS = 350;

// One scale for both images, in device pixels: whole-number upscaling (crisp pixels) for small images,
// native resolution where it fits, and smooth downscaling only when an image is larger than its frame.
export function displayScale(width, height, frameWidth, frameHeight, dpr) {
  const fit = Math.min((frameWidth * dpr) / width, (frameHeight * dpr) / height);
  const deviceScale = fit >= 1 ? Math.floor(fit) : fit;
  return deviceScale / dpr;
}

export class Stage {
  constructor({ flags, onFlag }) {
    this.frames = { left: document.getElementById("frame-left"), right: document.getElementById("frame-right") };
    this.loupes = { left: document.getElementById("loupe-left"), right: document.getElementById("loupe-right") };
    this.chips = { left: document.getElementById("chips-left"), right: document.getElementById("chips-right") };
    this.prompt = document.getElementById("prompt");
    this.stage = document.getElementById("stage");
    this.flickerBox = document.getElementById("flicker");
    this.flickerLabel = document.getElementById("flicker-label");
    this.flags = flags;
    this.onFlag = onFlag;
    this.pair = null;
    this.loupeOn = false;
    this.pointer = { u: 0.5, v: 0.5 };
    this.flickerTimer = null;
    this.buildChips();
    for (const side of ["left", "right"]) {
      this.frames[side].addEventListener("pointermove", (event) => this.track(side, event));
    }
    window.addEventListener("resize", () => this.layout());
  }

  buildChips() {
    for (const side of ["left", "right"]) {
      this.flags.forEach((flag, index) => {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.className = "chip";
        chip.dataset.flag = flag.value;
        chip.dataset.side = side;
        chip.setAttribute("aria-pressed", "false");
        const key = flag.key.toUpperCase();
        chip.innerHTML = `<kbd>${side === "left" ? flag.key : "⇧" + key}</kbd> ${flag.label}`;
        chip.addEventListener("click", (event) => { event.stopPropagation(); this.onFlag(side, flag.value); });
        this.chips[side].append(chip);
      });
    }
  }

  show(pair, flagged) {
    this.pair = pair;
    this.stage.dataset.assignment = pair.id;
    this.prompt.textContent = pair.prompt;
    this.prompt.title = pair.prompt;
    for (const side of ["left", "right"]) {
      const frame = this.frames[side];
      frame.querySelector("img")?.remove();
      frame.prepend(side === "left" ? pair.leftImage : pair.rightImage);
    }
    this.renderFlags(flagged);
    this.layout();
    if (this.loupeOn) this.placeLoupes();
    if (this.flickerTimer) this.flicker(true);
  }

  clear() {
    this.pair = null;
    delete this.stage.dataset.assignment;
    this.prompt.innerHTML = "&nbsp;";
    for (const side of ["left", "right"]) this.frames[side].querySelector("img")?.remove();
    this.renderFlags({ left: new Set(), right: new Set() });
    this.flicker(false);
  }

  renderFlags(flagged) {
    for (const side of ["left", "right"]) {
      for (const chip of this.chips[side].children) {
        const on = flagged[side].has(chip.dataset.flag);
        chip.classList.toggle("on", on);
        chip.setAttribute("aria-pressed", String(on));
      }
    }
  }

  layout() {
    if (!this.pair) return;
    const frame = this.frames.left.getBoundingClientRect();
    const width = Math.max(this.pair.left.width, this.pair.right.width);
    const height = Math.max(this.pair.left.height, this.pair.right.height);
    const scale = displayScale(width, height, frame.width, frame.height, window.devicePixelRatio || 1);
    for (const side of ["left", "right"]) {
      const image = side === "left" ? this.pair.leftImage : this.pair.rightImage;
      const meta = this.pair[side];
      image.style.width = `${meta.width * scale}px`;
      image.style.height = `${meta.height * scale}px`;
      image.classList.toggle("pixelated", scale * (window.devicePixelRatio || 1) > 1);
    }
  }

  track(side, event) {
    const image = this.frames[side].querySelector("img");
    if (!image) return;
    const box = image.getBoundingClientRect();
    this.pointer = {
      u: Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)),
      v: Math.min(1, Math.max(0, (event.clientY - box.top) / box.height)),
    };
    if (this.loupeOn) this.placeLoupes();
  }

  loupe(on) {
    this.loupeOn = on && !!this.pair;
    for (const side of ["left", "right"]) this.loupes[side].classList.toggle("on", this.loupeOn);
    document.body.classList.toggle("loupe-on", this.loupeOn);
    if (this.loupeOn) this.placeLoupes();
  }

  // Both loupes sit on the same relative spot of their image and magnify it alike.
  placeLoupes() {
    for (const side of ["left", "right"]) {
      const image = this.frames[side].querySelector("img");
      const loupe = this.loupes[side];
      if (!image) continue;
      const box = image.getBoundingClientRect();
      const frame = this.frames[side].getBoundingClientRect();
      const x = box.left - frame.left + this.pointer.u * box.width;
      const y = box.top - frame.top + this.pointer.v * box.height;
      const size = loupe.offsetWidth;
      loupe.style.left = `${x - size / 2}px`;
      loupe.style.top = `${y - size / 2}px`;
      loupe.style.backgroundImage = `url("${image.src}")`;
      loupe.style.backgroundSize = `${box.width * LOUPE_ZOOM}px ${box.height * LOUPE_ZOOM}px`;
      loupe.style.backgroundPosition =
        `${size / 2 - this.pointer.u * box.width * LOUPE_ZOOM}px ${size / 2 - this.pointer.v * box.height * LOUPE_ZOOM}px`;
    }
  }

  get flickering() { return this.flickerTimer !== null; }

  // Alternate the two images in one frame, so differences of texture and colour jump out.
  flicker(on) {
    clearInterval(this.flickerTimer);
    this.flickerTimer = null;
    this.flickerBox.querySelector("img")?.remove();
    this.flickerBox.hidden = !(on && this.pair);
    document.body.classList.toggle("flicker-on", !this.flickerBox.hidden);
    if (this.flickerBox.hidden) return;
    const copies = {
      left: this.pair.leftImage.cloneNode(), right: this.pair.rightImage.cloneNode(),
    };
    let side = "left";
    const swap = () => {
      this.flickerBox.querySelector("img")?.remove();
      this.flickerBox.prepend(copies[side]);
      this.flickerLabel.textContent = side === "left" ? "Left (1)" : "Right (2)";
      side = side === "left" ? "right" : "left";
    };
    swap();
    this.flickerTimer = setInterval(swap, FLICKER_MS);
  }
}
