'use strict';
// Mask-DPO view: draws one page of pairs or judged answers from the JSON in #data.
// State lives in the URL hash (#tab=pairs&mode=none&q=...&page=2), so a view can be linked.
(function () {
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById('data').textContent);
  const parseMs = performance.now() - t0;
  const app = document.getElementById('app');
  const SIDES = ['chosen', 'rejected'];
  const S = {tab: D.pairs ? 'pairs' : 'evals', mode: D.mode, q: '', label: '', status: '',
             model: '', page: 1, size: D.page_size};
  const ESC = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
  const esc = s => String(s).replace(/[&<>"']/g, c => ESC[c]);
  const pct = x => (x === null || x === undefined) ? 'n/a' : (100 * x).toFixed(1) + '%';
  const num = x => (x === null || x === undefined) ? 'n/a' : (+x).toFixed(2);

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    for (const k of Object.keys(S)) {
      if (!h.has(k)) continue;
      S[k] = (k === 'page' || k === 'size') ? Math.max(1, parseInt(h.get(k), 10) || 1) : h.get(k);
    }
    if (!D.modes.includes(S.mode)) S.mode = D.mode;
    if (!D[S.tab]) S.tab = D.pairs ? 'pairs' : 'evals';
  }
  function writeHash() {
    const h = new URLSearchParams();
    for (const [k, v] of Object.entries(S)) if (v !== '') h.set(k, v);
    try { history.replaceState(null, '', '#' + h.toString()); } catch (e) { /* file: quirks */ }
  }

  // ------------------------------------------------------------------------------ pairs
  const bit = () => 1 << D.modes.indexOf(S.mode);
  const counted = (sd, b) => { let n = 0; for (const d of sd.w) if (parseInt(d, 16) & b) n++; return n; };
  const hasLabel = (p, lab) => SIDES.some(s => p[s].sents.some(x => x[1] === lab));
  function pairPasses(p, skip) {
    if (skip !== 'q' && S.q && !p.question.toLowerCase().includes(S.q.toLowerCase())) return false;
    if (skip !== 'status' && S.status) {
      if (S.status === 'trained' && p.dropped) return false;
      if (S.status === 'dropped' && !p.dropped) return false;
      if (S.status.startsWith('dropped:') && p.dropped !== S.status.slice(8)) return false;
    }
    if (skip !== 'label' && S.label && !hasLabel(p, S.label)) return false;
    return true;
  }

  function tokensHtml(sd, b) {
    const out = [];
    for (let i = 0; i < sd.cls.length; i++) {
      const name = D.classes[sd.cls[i]] || ('class' + sd.cls[i]);
      const on = (parseInt(sd.w[i], 16) & b) !== 0;
      const t = sd.text[i];
      const tip = `#${i} id ${sd.ids[i]} ${JSON.stringify(t)} · ${name} · ${on ? 'counted' : 'not counted'}`;
      out.push(`<span class="tok c-${name} ${on ? 'on' : 'off'}${t === '' ? ' cont' : ''}" ` +
               `data-cls="${name}" data-id="${sd.ids[i]}" data-counted="${on ? 1 : 0}" ` +
               `title="${esc(tip)}">${esc(t).replace(/\n/g, '\u21b5\n')}</span>`);
    }
    if (sd.cut) out.push(`<span class="cut" title="cut by max_length: never trained on">${esc(sd.cut)}</span>`);
    return out.join('');
  }

  function pairHtml(p, i, b) {
    const sides = SIDES.map(s => {
      const sd = p[s], score = p.scores[s + '_score'];
      const sents = sd.sents.map(([t, lab, h]) =>
        `<li class="v-${h ? 'hallucinated' : 'correct'}"><span class="lab">${esc(lab)}</span>${esc(t)}</li>`).join('');
      return `<div class="side" data-side="${s}"><h4>${s}` +
             (score !== undefined ? ` <span class="n">score ${num(score)}</span>` : '') +
             ` <span class="n">· ${counted(sd, b)} of ${sd.w.length} tokens counted</span></h4>` +
             `<div class="tokens">${tokensHtml(sd, b)}</div><ol class="sents">${sents}</ol></div>`;
    }).join('');
    const drop = p.dropped ? `<span class="badge" title="the training drops this pair">dropped: ${esc(p.dropped)}</span>` : '';
    return `<article class="card pair" data-index="${i}" data-source="${esc(p.source)}"` +
           ` data-dropped="${esc(p.dropped || '')}"><h3>${esc(p.question)}${drop}</h3>` +
           `<div class="meta">${esc(p.source)}</div><div class="sides">${sides}</div></article>`;
  }

  function option(value, text, current) {
    return `<option value="${esc(value)}"${value === current ? ' selected' : ''}>${esc(text)}</option>`;
  }

  function pairsControls(all) {
    const sum = D.pairs.summary;
    const byLabel = all.filter(p => pairPasses(p, 'label'));
    const labels = Object.keys(sum.labels).sort().map(l =>
      option(l, `${l} (${byLabel.filter(p => hasLabel(p, l)).length})`, S.label)).join('');
    const byStatus = all.filter(p => pairPasses(p, 'status'));
    const reasons = Object.keys(sum.dropped).sort().map(r =>
      option('dropped:' + r, `dropped: ${r} (${byStatus.filter(p => p.dropped === r).length})`, S.status)).join('');
    const modes = D.modes.map(m => option(m, m + (m === D.mode ? ' (default)' : ''), S.mode)).join('');
    return `<label>question <input type="search" id="f-q" value="${esc(S.q)}" placeholder="contains..."></label>` +
      `<label>label <select id="f-label">${option('', `any (${byLabel.length})`, S.label)}${labels}</select></label>` +
      `<label>pairs <select id="f-status">${option('', `all (${byStatus.length})`, S.status)}` +
      option('trained', `trained (${byStatus.filter(p => !p.dropped).length})`, S.status) +
      option('dropped', `dropped (${byStatus.filter(p => p.dropped).length})`, S.status) + reasons + '</select></label>' +
      `<label>mask_mode <select id="f-mode">${modes}</select></label>`;
  }

  function pairsSummary(shown) {
    const sum = D.pairs.summary, b = bit();
    let tok = 0, on = 0;
    for (const p of shown) for (const s of SIDES) { tok += p[s].w.length; on += counted(p[s], b); }
    const invalid = Object.entries(sum.invalid).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
    const dropped = Object.entries(sum.dropped).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
    const rows = D.modes.map(m => `<tr${m === S.mode ? ' style="font-weight:bold"' : ''}><td>${m}</td>` +
      `<td>${pct(sum.masked_share[m])}</td></tr>`).join('');
    const cls = D.slots.map(c => `<tr><td>${c}</td>${SIDES.map(s => `<td>${sum.tokens[s][c] || 0}</td>`).join('')}</tr>`).join('');
    return `<div id="pairs-summary" class="summary" data-matching="${shown.length}">` +
      `<div>file: <b>${esc(sum.files.join(', '))}</b><br>records <b>${sum.read}</b> · valid <b>${sum.valid}</b>` +
      ` · invalid: ${esc(invalid)}<br>trained <b>${sum.trained}</b> · dropped by the paper's filters: ${esc(dropped)}` +
      `<br>max_length ${sum.max_length} · separator_tokens ${sum.separator_tokens} · end_tokens ${sum.end_tokens}` +
      `<br>matching the filter: <b id="n-matching">${shown.length}</b> pairs; under <b>${S.mode}</b> ` +
      `<b id="matching-masked">${pct(tok ? 1 - on / tok : null)}</b> of their response tokens are masked</div>` +
      `<table><tr><th>mask_mode</th><th>masked share (file)</th></tr>${rows}</table>` +
      `<table><tr><th>tokens</th><th>chosen</th><th>rejected</th></tr>${cls}</table></div>`;
  }

  function legend() {
    const have = D.slots.map(c => `<span class="tok c-${c} on">${c}</span>`);
    const missing = D.missing_slots.map(c =>
      `<span class="tok c-${c} slot-missing" title="not a token class in this version">${c} (no such class yet)</span>`);
    return `<div class="legend">${have.concat(missing).join(' ')} <span>underlined: counted in the loss under ` +
      `<b>${S.mode}</b>; <span class="tok c-correct off">faded</span>: not counted; ` +
      `<span class="cut">struck</span>: cut by max_length</span></div>`;
  }

  // ------------------------------------------------------------------------ evaluations
  const verdict = lab => D.evals.summary.verdicts[lab] || 'unparsed';
  const answers = q => q.answers.filter(a => S.model === '' || String(a.model) === S.model);
  const answerHas = (a, lab) => a.segments.some(x => x[1] === lab);
  function questionPasses(q, skip) {
    if (skip !== 'q' && S.q && !q.question.toLowerCase().includes(S.q.toLowerCase())) return false;
    const as = answers(q);
    if (!as.length) return false;
    if (skip !== 'label' && S.label && !as.some(a => answerHas(a, S.label))) return false;
    return true;
  }
  function evalsControls(all) {
    const byLabel = all.filter(q => questionPasses(q, 'label'));
    const labels = Object.keys(D.evals.summary.labels).sort().map(l =>
      option(l, `${l} (${byLabel.filter(q => answers(q).some(a => answerHas(a, l))).length})`, S.label)).join('');
    const models = D.evals.models.map((m, i) => option(String(i), m.name, S.model)).join('');
    return `<label>question <input type="search" id="f-q" value="${esc(S.q)}" placeholder="contains..."></label>` +
      `<label>label <select id="f-label">${option('', `any (${byLabel.length})`, S.label)}${labels}</select></label>` +
      `<label>model <select id="f-model">${option('', 'all', S.model)}${models}</select></label>`;
  }
  function evalsSummary(shown) {
    const rows = D.evals.models.map(m => m.runs.map(r => `<tr><td>${esc(m.name)}</td><td>${esc(r.run)}</td>` +
      `<td>${pct(r.score)}</td><td>${r.answers}</td></tr>`).join('')).join('');
    const labs = Object.entries(D.evals.summary.labels).map(([k, v]) => `${esc(k)} ${v}`).join(' · ');
    return `<div id="evals-summary" class="summary" data-matching="${shown.length}"><div>` +
      `questions <b>${D.evals.summary.questions}</b> · answers <b>${D.evals.summary.answers}</b><br>` +
      `sentence labels: ${labs}<br>matching the filter: <b id="n-matching">${shown.length}</b> questions</div>` +
      `<table><tr><th>model</th><th>run</th><th>score</th><th>answers</th></tr>${rows}</table></div>`;
  }
  function questionHtml(q) {
    const as = answers(q).map(a => {
      const m = D.evals.models[a.model];
      const segs = a.segments.map(([t, lab]) => lab === null ? esc(t) :
        `<span class="sent v-${verdict(lab)}" data-label="${esc(lab)}">${esc(t)}<sup>${esc(lab)}</sup></span>`).join('');
      return `<div class="answer" data-model="${esc(m.name)}" data-run="${esc(a.run)}"><h4>${esc(m.name)}` +
        ` <span class="n">· ${esc(a.run)} · score ${a.score === null ? 'n/a' : num(a.score)}</span></h4><p>${segs}</p></div>`;
    }).join('');
    return `<article class="card question" data-id="${esc(q.id)}"><h3>${esc(q.question)}</h3>` +
      `<div class="meta">id ${esc(q.id)}</div><div class="answers">${as}</div></article>`;
  }

  // ----------------------------------------------------------------------------- frame
  function pager(n) {
    const pages = Math.max(1, Math.ceil(n / S.size));
    S.page = Math.min(Math.max(1, S.page), pages);
    const sizes = [...new Set([10, 20, 50, 100, S.size])].sort((a, b) => a - b).map(s => option(String(s), s + ' per page', String(S.size))).join('');
    return `<span class="pager"><button data-go="-1"${S.page <= 1 ? ' disabled' : ''}>&lt;</button>` +
      `page <input id="f-page" type="number" min="1" max="${pages}" value="${S.page}" style="width:4.5em">` +
      ` of <span id="n-pages">${pages}</span><button data-go="1"${S.page >= pages ? ' disabled' : ''}>&gt;</button>` +
      `<select id="f-size">${sizes}</select></span>`;
  }

  function draw() {
    const start = performance.now();
    const tabs = ['pairs', 'evals'].filter(t => D[t]).map(t =>
      `<button data-tab="${t}" class="${t === S.tab ? 'active' : ''}">${t === 'pairs' ? 'Pairs' : 'Evaluations'}</button>`).join('');
    let controls, summary, body, n;
    if (S.tab === 'pairs') {
      const all = D.pairs.pairs, shown = all.filter(p => pairPasses(p));
      n = shown.length;
      controls = pairsControls(all); summary = pairsSummary(shown);
      const b = bit(), lo = (Math.min(S.page, Math.max(1, Math.ceil(n / S.size))) - 1) * S.size;
      body = legend() + shown.slice(lo, lo + S.size).map(p => pairHtml(p, all.indexOf(p), b)).join('');
    } else {
      const all = D.evals.questions, shown = all.filter(q => questionPasses(q));
      n = shown.length;
      controls = evalsControls(all); summary = evalsSummary(shown);
      const lo = (Math.min(S.page, Math.max(1, Math.ceil(n / S.size))) - 1) * S.size;
      body = shown.slice(lo, lo + S.size).map(questionHtml).join('');
    }
    const pg = pager(n);
    app.innerHTML = `<header><h1>${esc(D.title)}</h1><span class="tabs">${tabs}</span></header><main>` +
      `<div class="controls">${controls}${pg}</div>${summary}<div id="list">` +
      (n ? body : `${S.tab === 'pairs' ? legend() : ''}<div class="empty">nothing matches the filter</div>`) +
      `</div><div class="controls" style="position:static">${pg}</div></main>`;
    document.body.dataset.ready = '1';
    document.body.dataset.tab = S.tab;
    document.body.dataset.mode = S.mode;
    document.body.dataset.parseMs = parseMs.toFixed(1);
    document.body.dataset.drawMs = (performance.now() - start).toFixed(1);
    writeHash();
  }

  function set(changes, keepPage) {
    Object.assign(S, changes);
    if (!keepPage) S.page = 1;
    draw();
  }
  app.addEventListener('change', e => {
    const id = e.target.id, v = e.target.value;
    if (id === 'f-label') set({label: v});
    else if (id === 'f-status') set({status: v});
    else if (id === 'f-model') set({model: v});
    else if (id === 'f-mode') set({mode: v}, true);
    else if (id === 'f-size') set({size: parseInt(v, 10)});
    else if (id === 'f-page') set({page: parseInt(v, 10) || 1}, true);
  });
  let typing = null;
  app.addEventListener('input', e => {
    if (e.target.id !== 'f-q') return;
    clearTimeout(typing);
    const v = e.target.value;
    typing = setTimeout(() => {
      set({q: v});
      const box = document.getElementById('f-q');
      box.focus(); box.setSelectionRange(v.length, v.length);
    }, 250);
  });
  app.addEventListener('click', e => {
    const t = e.target.closest('button');
    if (!t) return;
    if (t.dataset.tab) set({tab: t.dataset.tab, q: '', label: '', status: '', model: ''});
    else if (t.dataset.go) { set({page: S.page + parseInt(t.dataset.go, 10)}, true); }
  });
  window.addEventListener('hashchange', () => { readHash(); draw(); });
  readHash();
  draw();
})();
