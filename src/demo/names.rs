//! Embedded, fictional-borough vocabulary: forenames with a UK frequency skew,
//! surnames with a heavy head and a long synthetic tail, streets, school names and
//! the nickname table police officers' spellings are drawn from.
//!
//! Lists are in rough frequency order; draws are Zipf-weighted by rank so that a few
//! names are common (and namesakes happen) while most are rare, as in real registers.

use rand::Rng;

/// Girls' forenames for children born about 2009–2021, most common first.
#[rustfmt::skip]
pub const GIRLS: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Emily", "Sophia", "Grace", "Lily", "Freya",
    "Isabella", "Ella", "Poppy", "Evie", "Charlotte", "Sophie", "Jessica", "Daisy", "Florence",
    "Ivy", "Willow", "Rosie", "Phoebe", "Sienna", "Millie", "Isabelle", "Harper", "Matilda",
    "Evelyn", "Alice", "Ruby", "Esme", "Eva", "Maya", "Chloe", "Scarlett", "Layla", "Elsie",
    "Hannah", "Lucy", "Holly", "Amber", "Erin", "Zara", "Maisie", "Imogen", "Aisha", "Fatima",
    "Maryam", "Zainab", "Amelie", "Niamh", "Megan", "Lola", "Molly", "Bella", "Thea", "Aria",
    "Luna", "Nancy", "Violet", "Harriet", "Emilia", "Eliza", "Martha", "Iris", "Summer",
    "Lacey", "Mollie", "Leah", "Katie", "Abigail", "Ellie", "Madison", "Lexi", "Gracie",
    "Darcie", "Hollie", "Skye", "Hafsa", "Khadija", "Oliwia", "Zuzanna", "Amira", "Ayesha",
    "Precious", "Blessing", "Tia", "Kayla", "Jasmine", "Paige", "Courtney", "Caitlin",
    "Bethany", "Nevaeh", "Aaliyah", "Frankie", "Georgia", "Elizabeth", "Rebecca",
];

/// Boys' forenames for children born about 2009–2021, most common first.
#[rustfmt::skip]
pub const BOYS: &[&str] = &[
    "Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Muhammad", "Oscar",
    "Charlie", "Jacob", "Thomas", "Henry", "William", "Alfie", "Joshua", "Freddie", "Archie",
    "James", "Ethan", "Isaac", "Alexander", "Joseph", "Edward", "Samuel", "Max", "Daniel",
    "Logan", "Lucas", "Mason", "Theo", "Dylan", "Riley", "Harrison", "Finley", "Adam", "Tommy",
    "Jake", "Ryan", "Lewis", "Luke", "Callum", "Kai", "Tyler", "Jayden", "Reggie", "Albert",
    "Louie", "Teddy", "Elijah", "Sebastian", "Benjamin", "Toby", "Jenson", "Ronnie", "Stanley",
    "Hugo", "Zachary", "Bobby", "Liam", "Jamie", "Kian", "Connor", "Owen", "Ibrahim", "Yusuf",
    "Ali", "Ayaan", "Hamza", "Omar", "Zayn", "Jakub", "Filip", "Kacper", "Oskar", "Michael",
    "Matthew", "Nathan", "Aaron", "Caleb", "Rhys", "Evan", "Cameron", "Brandon", "Jordan",
    "Kyle", "Bailey", "Ellis", "Harvey", "Leon", "Jude", "Rory", "Sonny", "Louis", "David",
    "Christopher", "Robert", "Anthony", "Emmanuel",
];

/// Women's forenames for adults born about 1955–2000, most common first.
#[rustfmt::skip]
pub const WOMEN: &[&str] = &[
    "Sarah", "Emma", "Laura", "Claire", "Lisa", "Nicola", "Rebecca", "Gemma", "Kelly",
    "Michelle", "Louise", "Joanne", "Amy", "Elizabeth", "Rachel", "Jennifer", "Stephanie",
    "Hayley", "Victoria", "Samantha", "Katherine", "Helen", "Natalie", "Donna", "Jessica",
    "Charlotte", "Lauren", "Danielle", "Kirsty", "Leanne", "Zoe", "Jade", "Karen", "Susan",
    "Angela", "Tracey", "Dawn", "Julie", "Amanda", "Deborah", "Jacqueline", "Kimberley",
    "Stacey", "Sophie", "Hannah", "Katie", "Melissa", "Shannon", "Chelsea", "Ashley", "Naomi",
    "Toni", "Carly", "Kerry", "Sharon", "Paula", "Wendy", "Margaret", "Patricia", "Christine",
    "Alison", "Jane", "Anne", "Catherine", "Fiona", "Joanna", "Lindsey", "Sadia", "Nasreen",
    "Shabana", "Fatima", "Aisha", "Farzana", "Samina", "Agnieszka", "Katarzyna", "Anna",
    "Magdalena", "Grace", "Blessing", "Chloe", "Holly", "Abigail", "Megan", "Bethany", "Jodie",
    "Lucy", "Alice", "Natasha", "Tanya", "Marie", "Ruth", "Carol", "Diane", "Janet",
    "Lorraine", "Beverley", "Kathleen", "Nicole", "Siobhan",
];

/// Men's forenames for adults born about 1955–2000, most common first.
#[rustfmt::skip]
pub const MEN: &[&str] = &[
    "David", "Paul", "Mark", "Andrew", "James", "John", "Michael", "Richard", "Christopher",
    "Daniel", "Lee", "Stephen", "William", "Robert", "Anthony", "Matthew", "Thomas", "Gary",
    "Darren", "Craig", "Jason", "Wayne", "Steven", "Peter", "Simon", "Ian", "Neil", "Scott",
    "Carl", "Shaun", "Dean", "Martin", "Kevin", "Jonathan", "Adam", "Ryan", "Jamie", "Luke",
    "Benjamin", "Joseph", "Alexander", "Edward", "Samuel", "Nathan", "Kieran", "Liam", "Sean",
    "Philip", "Graham", "Keith", "Alan", "Brian", "Colin", "Kenneth", "Raymond", "Terence",
    "Barry", "Gareth", "Russell", "Mohammed", "Muhammad", "Imran", "Tariq", "Asif", "Shahid",
    "Khalid", "Zahid", "Piotr", "Tomasz", "Krzysztof", "Marcin", "Emeka", "Chinedu", "Kwame",
    "Joshua", "Jack", "Callum", "Connor", "Jordan", "Aaron", "Dale", "Glen", "Stuart", "Kyle",
    "Tony", "Lewis", "Marcus", "Nicholas", "Frank", "George", "Patrick", "Reece", "Brandon",
    "Bradley", "Leon", "Dominic", "Tyrone", "Jermaine", "Declan", "Hassan",
];

/// The common head of the surname distribution, most common first (a North-West
/// English borough: Smith and Jones, Lancashire names, and British Asian, Irish,
/// Polish and West African families).
#[rustfmt::skip]
pub const SURNAMES_HEAD: &[&str] = &[
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Khan", "Davies", "Evans", "Wilson",
    "Thomas", "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "Hussain",
    "White", "Edwards", "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel",
    "Ali", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore",
    "Ahmed", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen", "James", "Scott",
    "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths",
    "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw",
    "Murphy", "Miller", "Cox", "Richards", "Begum", "Shah", "Iqbal", "Akhtar", "Rahman",
    "Mahmood", "Butt", "Nowak", "Kowalski", "Wisniewski", "Mensah", "Okafor", "Adeyemi",
    "Okoro", "Byrne", "O'Brien", "Doyle", "Gallagher", "Lynch", "Quinn", "Walsh", "Ryan",
    "McDonald", "Campbell", "Stewart", "Anderson", "Reid", "Murray", "Kennedy", "Fletcher",
    "Holt", "Howarth", "Whittaker", "Ashton", "Hargreaves", "Lord", "Kershaw", "Barlow",
    "Heywood", "Platt", "Chadwick", "Entwistle", "Ogden", "Schofield", "Crossley", "Pilling",
    "Greenwood", "Ramsbottom", "Butterworth", "Holden", "Kay", "Booth", "Hulme", "Birch",
    "Warburton", "Nuttall", "Tattersall",
];

/// Syllables combined into the long tail of rare, English-looking surnames.
#[rustfmt::skip]
const TAIL_PREFIXES: &[&str] = &[
    "Ash", "Black", "Brad", "Brook", "Clay", "Cold", "Crom", "Dal", "Dun", "Elm", "Fair",
    "Farn", "Gold", "Green", "Hal", "Ham", "Hart", "Hay", "Hol", "Kirk", "Lang", "Lin",
    "Marsh", "Mill", "Mor", "New", "North", "Old", "Pen", "Pres", "Rad", "Red", "Ros", "Shel",
    "South", "Stan", "Staf", "Thorn", "Wal", "West", "Whit", "Wil", "Win", "Wy",
];
#[rustfmt::skip]
const TAIL_SUFFIXES: &[&str] = &[
    "by", "combe", "croft", "dale", "den", "field", "ford", "gate", "ham", "hurst", "land",
    "ley", "low", "more", "ridge", "stock", "thorpe", "ton", "well", "wick", "wood", "worth",
    "shaw", "hall", "bury",
];

/// Share of surname draws that come from the long tail.
const TAIL_SHARE: f64 = 0.3;

/// Formal name → the informal spellings an officer may write.
pub const NICKNAMES: &[(&str, &[&str])] = &[
    ("Elizabeth", &["Beth", "Liz"]),
    ("William", &["Bill", "Will"]),
    ("Robert", &["Rob", "Bob"]),
    ("Michael", &["Mike"]),
    ("Christopher", &["Chris"]),
    ("Daniel", &["Danny", "Dan"]),
    ("Anthony", &["Tony"]),
    ("Stephen", &["Steve"]),
    ("Steven", &["Steve"]),
    ("James", &["Jim", "Jimmy"]),
    ("Joseph", &["Joe"]),
    ("Thomas", &["Tom", "Tommy"]),
    ("Rebecca", &["Becky", "Becca"]),
    ("Jennifer", &["Jenny", "Jen"]),
    ("Katherine", &["Kate", "Kath"]),
    ("Catherine", &["Cathy", "Cath"]),
    ("Samantha", &["Sam"]),
    ("Nicola", &["Nicky"]),
    ("Victoria", &["Vicky", "Tori"]),
    ("Margaret", &["Maggie", "Peggy"]),
    ("Richard", &["Rich", "Dick"]),
    ("Andrew", &["Andy"]),
    ("Matthew", &["Matt"]),
    ("Alexander", &["Alex"]),
    ("Jonathan", &["Jon", "Jonny"]),
    ("Benjamin", &["Ben"]),
    ("Edward", &["Ed", "Eddie"]),
    ("Deborah", &["Debbie", "Debs"]),
    ("Susan", &["Sue"]),
    ("Patricia", &["Trish", "Pat"]),
    ("Kimberley", &["Kim"]),
    ("Jacqueline", &["Jackie"]),
    ("Samuel", &["Sam", "Sammy"]),
    ("Nicholas", &["Nick"]),
    ("Philip", &["Phil"]),
    ("Kenneth", &["Ken", "Kenny"]),
    ("Raymond", &["Ray"]),
    ("Terence", &["Terry"]),
    ("Joshua", &["Josh"]),
    ("Jessica", &["Jess"]),
    ("Stephanie", &["Steph"]),
    ("Danielle", &["Dani"]),
    ("Abigail", &["Abbie", "Abi"]),
    ("Oliver", &["Ollie"]),
    ("Isabella", &["Bella", "Izzy"]),
    ("Zachary", &["Zach"]),
    ("Alexandra", &["Alex"]),
    ("Amanda", &["Mandy"]),
    ("Christine", &["Chris"]),
    ("Gareth", &["Gaz"]),
    ("Charlotte", &["Lottie"]),
    ("Frederick", &["Fred"]),
];

/// Street names, combined with a suffix.
#[rustfmt::skip]
pub const STREETS: &[&str] = &[
    "Park", "Church", "Station", "Victoria", "Albert", "Queen", "King", "Mill", "Chapel",
    "Bolton", "Eccles", "Liverpool", "Oldfield", "Cross", "Clarendon", "Derby", "Lancaster",
    "Stanley", "Grosvenor", "Hawthorn", "Ash", "Beech", "Elm", "Oak", "Willow", "Cedar",
    "Holly", "Rowan", "Laburnum", "Lime", "Sycamore", "Chestnut", "Maple", "Birch", "Moss",
    "Brook", "River", "Canal", "Bridge", "Bank", "Hill", "Green", "Meadow", "Orchard",
    "Spring", "Well", "Lark", "Swan", "Kingfisher", "Heron", "Wren", "Robin", "Dover",
    "Cromwell", "Nelson", "Wellington", "Trafalgar", "Peel", "Gladstone", "Byron", "Milton",
    "Shelley", "Keats", "Tennyson", "Chaucer", "Dickens", "Hardy", "Ruskin", "Blackburn",
    "Worsley", "Swinton", "Walkden", "Pendlebury", "Irlam", "Cadishead", "Kersal",
    "Broughton", "Weaste", "Seedley", "Langworthy", "Ordsall", "Winton", "Monton",
    "Boothstown", "Clifton", "Agecroft", "Hazelhurst", "Wardley", "Moorside", "Claremont",
    "Hightown", "Brindle", "Chaseley", "Ellesmere", "Barton", "Patricroft", "Roe", "Lowry",
    "Brunel", "Stephenson", "Telford",
];

/// Street suffixes with relative weights.
pub const STREET_SUFFIXES: &[(&str, u32)] = &[
    ("Road", 30),
    ("Street", 25),
    ("Avenue", 12),
    ("Close", 10),
    ("Lane", 8),
    ("Grove", 5),
    ("Drive", 5),
    ("Way", 3),
    ("Crescent", 2),
];

/// Common abbreviations a police or housing officer types.
pub const SUFFIX_ABBREVIATIONS: &[(&str, &str)] = &[
    ("Road", "Rd"),
    ("Street", "St"),
    ("Avenue", "Ave"),
    ("Close", "Cl"),
    ("Lane", "Ln"),
    ("Grove", "Gr"),
    ("Drive", "Dr"),
    ("Crescent", "Cres"),
];

/// Fictional place names for schools.
#[rustfmt::skip]
pub const PLACES: &[&str] = &[
    "Hollin Brook", "Brindle Heath", "Agecroft Vale", "Chaseley Field", "Langley Moor",
    "Ellesmere Park", "Swinton Moss", "Walkden Brow", "Lower Kersal", "Barton Moss",
    "Irlam Wharf", "Cadis Green", "Ordsall Quay", "Charlestown", "Pendleton Fold",
    "Higher Broughton", "Claremont Heights", "Moorside Vale", "Little Hulton", "Roe Green",
    "Peel Green", "Patricroft Bridge", "Winton Fold", "Beech Farm", "Oakwood Park",
    "Wardley Hall", "Clifton Hey", "Monton Green", "Boothstown Brook", "Seedley Grove",
    "Weaste Lane", "Irwell Bank", "Kersal Vale", "Hazelhurst", "Linnyshaw", "Mosley Common",
    "Dukesgate", "Burying Lane", "Westwood Park", "Lightoaks",
];

/// Saints for church schools.
#[rustfmt::skip]
pub const SAINTS: &[&str] = &[
    "St Mary's", "St Joseph's", "St Peter's", "St Paul's", "St John's", "St Andrew's",
    "St Luke's", "St Mark's", "St George's", "St Thomas's", "St Augustine's", "St Gilbert's",
    "St Charles's", "St Edmund's", "Holy Family", "Christ Church",
];

/// Lead professionals on early-help cases.
#[rustfmt::skip]
pub const PRACTITIONERS: &[&str] = &[
    "A. Okonkwo", "B. Hargreaves", "C. Malik", "D. Fenton", "E. Walsh", "F. Rashid",
    "G. Pearson", "H. Nowicka", "J. Thornley", "K. Ahmed", "L. Brennan", "M. Sutcliffe",
];

/// Weighted draws by cumulative weight and binary search: cheaper than rand's
/// `WeightedIndex` for repeated draws and independent of its sampling details.
#[derive(Debug, Clone)]
pub struct Weighted {
    cumulative: Vec<f64>,
}

impl Weighted {
    /// Zipf-like weights 1/(rank + offset)^exponent for `n` ranked items.
    pub fn zipf(n: usize, offset: f64, exponent: f64) -> Weighted {
        Weighted::from_weights((0..n).map(|r| 1.0 / (r as f64 + offset).powf(exponent)))
    }

    /// Arbitrary non-negative weights.
    pub fn from_weights(weights: impl IntoIterator<Item = f64>) -> Weighted {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w.max(0.0);
                total
            })
            .collect();
        Weighted { cumulative }
    }

    /// An index in `0..n`; 0 when there are no items (callers never build empty ones).
    pub fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

/// The surname table: the head in rank order followed by the synthetic tail.
#[derive(Debug, Clone)]
pub struct Surnames {
    pub names: Vec<String>,
    head: Weighted,
}

impl Surnames {
    /// Builds the head and the tail (every prefix × suffix combination).
    pub fn new() -> Surnames {
        let mut names: Vec<String> = SURNAMES_HEAD.iter().map(|s| (*s).to_string()).collect();
        for p in TAIL_PREFIXES {
            for s in TAIL_SUFFIXES {
                let name = format!("{p}{s}");
                if !SURNAMES_HEAD.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        Surnames {
            names,
            head: Weighted::zipf(SURNAMES_HEAD.len(), 1.0, 1.0),
        }
    }

    /// A surname index: the head with Zipf weights, else uniformly from the tail.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> u32 {
        let tail = self.names.len() - SURNAMES_HEAD.len();
        if tail > 0 && rng.random_bool(TAIL_SHARE) {
            (SURNAMES_HEAD.len() + rng.random_range(0..tail)) as u32
        } else {
            self.head.sample(rng) as u32
        }
    }

    /// The surname with this index.
    pub fn get(&self, index: u32) -> &str {
        self.names
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or("Smith")
    }
}

impl Default for Surnames {
    fn default() -> Self {
        Surnames::new()
    }
}

/// A nickname for `name`, if the table has one.
pub fn nickname<R: Rng>(name: &str, rng: &mut R) -> Option<&'static str> {
    NICKNAMES
        .iter()
        .find(|(formal, _)| *formal == name)
        .map(|(_, short)| short[rng.random_range(0..short.len())])
}

/// A one-letter typo: two adjacent letters swapped (never the first letter, so the
/// initial stays right, as with most keying errors), or a doubled letter when no
/// swap would change the name.
pub fn typo<R: Rng>(name: &str, rng: &mut R) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() < 3 {
        return format!("{name}{}", chars.last().copied().unwrap_or('e'));
    }
    let candidates: Vec<usize> = (1..chars.len() - 1)
        .filter(|&i| chars[i] != chars[i + 1])
        .collect();
    if candidates.is_empty() {
        let mut out = name.to_string();
        out.push(chars[chars.len() - 1]);
        return out;
    }
    let i = candidates[rng.random_range(0..candidates.len())];
    let mut out = chars;
    out.swap(i, i + 1);
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn surname_frequencies_have_a_heavy_head_and_a_long_tail() {
        let s = Surnames::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0u32; s.names.len()];
        for _ in 0..20_000 {
            counts[s.sample(&mut rng) as usize] += 1;
        }
        // Smith is far more common than the 100th head name; the tail is used.
        assert!(counts[0] > 10 * counts[100].max(1), "{}", counts[0]);
        let tail: u32 = counts[SURNAMES_HEAD.len()..].iter().sum();
        assert!(tail > 4_000 && tail < 8_000, "{tail}");
        assert!(s.names.len() > 1_000);
    }

    #[test]
    fn typos_keep_the_initial_and_change_the_name() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for name in ["Oliver", "Amelia", "Al", "Anna", "Lee"] {
            let t = typo(name, &mut rng);
            assert_ne!(t, name);
            assert_eq!(t.chars().next(), name.chars().next());
        }
        assert_eq!(nickname("Zebedee", &mut rng), None);
        assert!(["Beth", "Liz"].contains(&nickname("Elizabeth", &mut rng).unwrap()));
    }
}
