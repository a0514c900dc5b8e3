# Per thread: share of samples; kernel time by syscall; user leaf symbols.
import subprocess, sys, collections, re
data = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
out = subprocess.run(['perf','script','-i',data,'-F','tid,ip,sym,dso'],capture_output=True,text=True).stdout
samples = []; cur = None
for line in out.splitlines():
    if not line.strip():
        continue
    if not line.startswith('\t') and not line.startswith(' '):
        cur = [line.split()[0], []]; samples.append(cur); continue
    m = re.match(r'\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$', line)
    if m and cur: cur[1].append(m.groups())
tot = collections.Counter(s[0] for s in samples); allt = len(samples)
for tid, n in tot.most_common(3):
    leaf = collections.Counter(); sysc = collections.Counter(); k = 0
    for t, fr in samples:
        if t != tid or not fr: continue
        sym, dso = fr[0]
        if 'kernel' in dso:
            k += 1
            sc = next((re.sub(r'^__x64_sys_', '', s) for s, d in fr if s.startswith('__x64_sys_')), None)
            sysc[sc or ('irq/other:' + sym)] += 1
        else:
            leaf[re.sub(r'file:///\S*/packages/', '', sym)[:100]] += 1
    print(f'== tid {tid}: {n} samples ({100*n/allt:.0f}% of all); kernel {100*k/n:.0f}%')
    print('  kernel by syscall:')
    for s, c in sysc.most_common(8): print(f'    {100*c/n:5.1f}%  {s}')
    print('  user leaf functions:')
    for s, c in leaf.most_common(top): print(f'    {100*c/n:5.1f}%  {s}')
