"""What a compiled or lowered module's text says about its ops (tests of ssljax.cpu's routes)."""
import re


def transposes_with(hlo_text: str, opcode: str = "maximum") -> list[str]:
  """Names of the fusions in an optimized HLO module whose result is a transposed array (their
  root is a transpose, or a copy of one) and that also compute `opcode` on the way."""
  bodies = {m.group(1): m.group(0)
            for m in re.finditer(r"\n(%[\w.\-]+) \(.*?\n}\n", hlo_text, re.S)}

  def transposing(body: str) -> bool:
    root = re.search(r"ROOT %[\w.\-]+ = \S+ (\w+)\(", body)
    return bool(root) and root.group(1) in ("transpose", "copy") and " transpose(" in body

  fusions = re.finditer(r"%([\w.\-]+) = \S+ fusion\(.*?calls=(%[\w.\-]+)", hlo_text)
  return [m.group(1) for m in fusions
          if transposing(bodies.get(m.group(2), "")) and f" {opcode}(" in bodies[m.group(2)]]


def dilated_convolutions(stablehlo_text: str) -> int:
  """How many convolutions of a StableHLO module dilate their input."""
  return sum(1 for d in re.findall(r"lhs_dilate = \[(\d+), (\d+)\]", stablehlo_text)
             if d != ("1", "1"))


def cpu_route(stablehlo_text: str) -> dict[str, int]:
  """Ops of a lowered program that ssljax.cpu's ResNet ops add and a plain ResNet has none of:
  conditionals (`computed_once`) and dot_generals, batched or not (Winograd's products and
  transforms; a backbone alone has no other dot)."""
  return {"conditionals": len(re.findall(r"stablehlo\.(?:case|if)\b", stablehlo_text)),
          "batched_dots": len(re.findall(r"stablehlo\.dot_general .*batching_dims",
                                         stablehlo_text)),
          "dots": stablehlo_text.count("stablehlo.dot_general")}
